// Checks a securechat transcript's tree checkpoints (docs/TRANSCRIPT.md §3.6,
// §4.1) with Go's reference implementations, golang.org/x/mod/sumdb/tlog and
// golang.org/x/mod/sumdb/note: every line is a leaf; every checkpoint entry
// with a root must carry a note that opens with the verifier key, for the
// tree of the lines before it.
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/transcript.go VKEY FILE.jsonl...
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type hashes map[int64]tlog.Hash

func (h hashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = h[x]
	}
	return out, nil
}

func main() {
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		panic(err)
	}
	stored := hashes{}
	var n int64
	checked := 0
	for _, path := range os.Args[2:] {
		f, err := os.Open(path)
		if err != nil {
			panic(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<21)
		for sc.Scan() {
			line := sc.Bytes()
			var e map[string]any
			if err := json.Unmarshal(line, &e); err != nil {
				panic(err)
			}
			if e["type"] == "checkpoint" && e["root"] != nil {
				origin := e["origin"].(string)
				size := int64(e["head_seq"].(float64))
				text := origin + "\n" + strconv.FormatInt(size, 10) + "\n" + e["root"].(string) + "\n"
				msg := text + "\n\u2014 " + origin + " " + e["note_sig"].(string) + "\n"
				opened, err := note.Open([]byte(msg), note.VerifierList(verifier))
				if err != nil {
					fmt.Printf("FAIL: checkpoint at line %d: %v\n", n+1, err)
					os.Exit(1)
				}
				root, err := tlog.TreeHash(size, stored)
				if err != nil || size != n {
					fmt.Printf("FAIL: checkpoint at line %d: size %d, %d lines before it\n", n+1, size, n)
					os.Exit(1)
				}
				if base64.StdEncoding.EncodeToString(root[:]) != e["root"].(string) || !strings.HasPrefix(opened.Text, origin) {
					fmt.Printf("FAIL: checkpoint at line %d: root differs from tlog's\n", n+1)
					os.Exit(1)
				}
				checked++
			}
			hs, err := tlog.StoredHashes(n, line, stored)
			if err != nil {
				panic(err)
			}
			base := tlog.StoredHashCount(n)
			for j, h := range hs {
				stored[base+int64(j)] = h
			}
			n++
		}
		f.Close()
	}
	fmt.Printf("OK: %d lines, %d tree checkpoints verified by sumdb/note and sumdb/tlog\n", n, checked)
}
