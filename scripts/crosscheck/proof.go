// Checks a proof written by `securechat transcript prove` (c2sp.org/tlog-proof@v1)
// with Go's reference implementations: the checkpoint opens with the vkey
// (golang.org/x/mod/sumdb/note) and the entry carried in `extra` is at `index`
// in the checkpoint's tree (golang.org/x/mod/sumdb/tlog CheckRecord).
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/proof.go VKEY FILE
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(f string, a ...any) {
	fmt.Printf("FAIL: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	lines := strings.Split(string(raw), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("header %q", lines[0])
	}
	i := 1
	var extra []byte
	if strings.HasPrefix(lines[i], "extra ") {
		extra, err = base64.StdEncoding.DecodeString(lines[i][6:])
		if err != nil {
			fail("extra: %v", err)
		}
		i++
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[i], "index "), 10, 64)
	if err != nil {
		fail("index: %v", err)
	}
	i++
	var proof tlog.RecordProof
	for ; lines[i] != ""; i++ {
		b, err := base64.StdEncoding.DecodeString(lines[i])
		if err != nil || len(b) != 32 {
			fail("hash line %d", i+1)
		}
		var h tlog.Hash
		copy(h[:], b)
		proof = append(proof, h)
	}
	checkpoint := strings.Join(lines[i+1:], "\n")
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		panic(err)
	}
	n, err := note.Open([]byte(checkpoint), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	body := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseInt(body[1], 10, 64)
	rootBytes, _ := base64.StdEncoding.DecodeString(body[2])
	var root tlog.Hash
	copy(root[:], rootBytes)
	if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(extra)); err != nil {
		fail("inclusion: %v", err)
	}
	fmt.Printf("OK: leaf %d of %s at size %d, checked by sumdb/tlog and sumdb/note\n", index, body[0], size)
}
