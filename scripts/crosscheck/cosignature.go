// A known-answer vector for src/transcript/cosignature.ts from an independent
// implementation of c2sp.org/tlog-cosignature (Ed25519, cosignature/v1),
// written from the spec's byte layout with Go's crypto/ed25519: a witness
// cosigns the checkpoint that Go's golang.org/x/mod/sumdb/note signed in
// test/vectors/note.json (scripts/crosscheck/note.go), and note.Open still
// opens the cosigned note with the log's key.
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/cosignature.go < test/vectors/note.json > test/vectors/cosignature.json
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

func main() {
	var signed struct{ Vkey, Text, Note string }
	if err := json.NewDecoder(os.Stdin).Decode(&signed); err != nil {
		panic(err)
	}

	// The witness: key ID = SHA-256(name || 0x0A || 0x04 || key)[:4].
	name := "witness.example.com/w1"
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0x40 + i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	h := sha256.Sum256(append(append([]byte(name+"\n"), 0x04), pub...))
	keyID := h[:4]
	vkey := name + "+" + hex.EncodeToString(keyID) + "+" + base64.StdEncoding.EncodeToString(append([]byte{0x04}, pub...))

	// Signed message: "cosignature/v1\ntime T\n" || checkpoint text.
	var timestamp uint64 = 1795000000
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", timestamp, signed.Text)
	// Signature: key ID || u64be(timestamp) || Ed25519 signature.
	blob := append([]byte{}, keyID...)
	blob = binary.BigEndian.AppendUint64(blob, timestamp)
	blob = append(blob, ed25519.Sign(priv, []byte(msg))...)
	line := "\u2014 " + name + " " + base64.StdEncoding.EncodeToString(blob) + "\n"
	cosigned := signed.Note + line

	// The log's signature still opens the cosigned note (Go ignores the unknown key's line).
	v, err := note.NewVerifier(signed.Vkey)
	if err != nil {
		panic(err)
	}
	if _, err := note.Open([]byte(cosigned), note.VerifierList(v)); err != nil {
		panic(err)
	}
	out := map[string]any{
		"source":         "crypto/ed25519 from c2sp.org/tlog-cosignature's layout, over test/vectors/note.json; golang.org/x/mod/sumdb/note opens the result (scripts/crosscheck/cosignature.go)",
		"log_vkey":       signed.Vkey,
		"witness_seed":   base64.StdEncoding.EncodeToString(seed),
		"witness_name":   name,
		"witness_vkey":   vkey,
		"timestamp":      timestamp,
		"text":           signed.Text,
		"signed_message": msg,
		"note":           signed.Note,
		"cosignature":    line,
		"cosigned_note":  cosigned,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
