// A known-answer vector for src/transcript/cosignature.ts from an independent
// implementation of c2sp.org/tlog-cosignature (Ed25519, cosignature/v1),
// written from the spec's byte layout with Go's crypto/ed25519: the log signs
// a checkpoint with golang.org/x/mod/sumdb/note, a witness cosigns it.
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/cosignature.go > test/vectors/cosignature.json
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func seed(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func main() {
	// The log: a checkpoint signed as a note (signature type 0x01).
	origin := "chat.example.com/securechat"
	logSeed := seed(0)
	logPub := ed25519.NewKeyFromSeed(logSeed).Public().(ed25519.PublicKey)
	logVkey, err := note.NewEd25519VerifierKey(origin, logPub)
	if err != nil {
		panic(err)
	}
	skey := "PRIVATE+KEY+" + origin + "+" + logVkey[len(origin)+1:len(origin)+9] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, logSeed...))
	signer, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	root := make([]byte, 32)
	for i := range root {
		root[i] = byte(0xa0 + i)
	}
	text := origin + "\n12345\n" + base64.StdEncoding.EncodeToString(root) + "\n"
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		panic(err)
	}

	// The witness: key ID = SHA-256(name || 0x0A || 0x04 || key)[:4].
	name := "witness.example.com/w1"
	wSeed := seed(0x40)
	wPriv := ed25519.NewKeyFromSeed(wSeed)
	wPub := wPriv.Public().(ed25519.PublicKey)
	h := sha256.Sum256(append(append([]byte(name+"\n"), 0x04), wPub...))
	keyID := h[:4]
	wVkey := name + "+" + hex.EncodeToString(keyID) + "+" + base64.StdEncoding.EncodeToString(append([]byte{0x04}, wPub...))

	// Signed message: "cosignature/v1\ntime T\n" || checkpoint text.
	var timestamp uint64 = 1795000000
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", timestamp, text)
	sig := ed25519.Sign(wPriv, []byte(msg))
	// Signature: key ID || u64be(timestamp) || Ed25519 signature.
	blob := make([]byte, 0, 76)
	blob = append(blob, keyID...)
	ts := make([]byte, 8)
	binary.BigEndian.PutUint64(ts, timestamp)
	blob = append(blob, ts...)
	blob = append(blob, sig...)
	line := "\u2014 " + name + " " + base64.StdEncoding.EncodeToString(blob) + "\n"
	cosigned := string(signed) + line

	// The log's signature still opens the cosigned note (Go ignores the unknown key's line).
	v, err := note.NewVerifier(logVkey)
	if err != nil {
		panic(err)
	}
	if _, err := note.Open([]byte(cosigned), note.VerifierList(v)); err != nil {
		panic(err)
	}
	out := map[string]any{
		"source":         "crypto/ed25519 from c2sp.org/tlog-cosignature's layout; golang.org/x/mod/sumdb/note for the log's signature (scripts/crosscheck/cosignature.go)",
		"log_seed":       base64.StdEncoding.EncodeToString(logSeed),
		"log_vkey":       logVkey,
		"witness_seed":   base64.StdEncoding.EncodeToString(wSeed),
		"witness_name":   name,
		"witness_vkey":   wVkey,
		"timestamp":      timestamp,
		"text":           text,
		"signed_message": msg,
		"note":           string(signed),
		"cosignature":    line,
		"cosigned_note":  cosigned,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
