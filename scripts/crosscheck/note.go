// A known-answer vector for src/transcript/note.ts from an independent
// implementation: Go's golang.org/x/mod/sumdb/note signs a checkpoint
// (c2sp.org/tlog-checkpoint) with a fixed Ed25519 seed.
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/note.go > test/vectors/note.json
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	name := "chat.example.com:7447"
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		panic(err)
	}
	// An skey is PRIVATE+KEY+name+keyid+base64(0x01 || seed); build it from the vkey's parts.
	skey := "PRIVATE+KEY+" + name + "+" + vkey[len(name)+1:len(name)+9] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	signer, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	root := make([]byte, 32)
	for i := range root {
		root[i] = byte(0xa0 + i)
	}
	text := name + "\n12345\n" + base64.StdEncoding.EncodeToString(root) + "\n"
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		panic(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	if _, err := note.Open(signed, note.VerifierList(verifier)); err != nil {
		panic(err)
	}
	out := map[string]string{
		"source": "golang.org/x/mod/sumdb/note (scripts/crosscheck/note.go)",
		"seed":   base64.StdEncoding.EncodeToString(seed),
		"name":   name,
		"vkey":   vkey,
		"text":   text,
		"note":   string(signed),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
