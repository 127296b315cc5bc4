// Checks a directory written by `securechat transcript tiles` (c2sp.org/tlog-tiles)
// as a monitor would, with Go's reference implementations: the checkpoint opens
// with the vkey (golang.org/x/mod/sumdb/note); every hash is read through
// golang.org/x/mod/sumdb/tlog's TileHashReader, which checks each tile it reads
// against the signed tree; the root is recomputed (TreeHash); each entry in the
// bundles hashes (RecordHash) to its leaf and has an inclusion proof
// (ProveRecord/CheckRecord).
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/crosscheck/tiles.go VKEY DIR
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(f string, a ...any) {
	fmt.Printf("FAIL: "+f+"\n", a...)
	os.Exit(1)
}

type dirTiles struct {
	dir   string
	reads int
}

func (d *dirTiles) Height() int { return 8 }

// c2sp paths have no height element: Go's tile/8/L/N is tile/L/N.
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

func (d *dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(d.dir, c2spPath(t)))
		if err != nil {
			return nil, err
		}
		d.reads++
		out[i] = b
	}
	return out, nil
}

func (d *dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func main() {
	v, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fail("vkey: %v", err)
	}
	dir := os.Args[2]
	raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	body := strings.Split(n.Text, "\n")
	size, err := strconv.ParseInt(body[1], 10, 64)
	if err != nil {
		fail("size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(body[2])
	if err != nil || len(rootBytes) != 32 {
		fail("root: %v", err)
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	tr := &dirTiles{dir: dir}
	hr := tlog.TileHashReader(tree, tr)
	got, err := tlog.TreeHash(size, hr)
	if err != nil || got != root {
		fail("TreeHash: %v %v", got, err)
	}
	entries := int64(0)
	for b := int64(0); b*256 < size; b++ {
		w := size - b*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: -1, N: b, W: int(w)}
		p := "tile/entries/" + strings.TrimPrefix(t.Path(), "tile/8/data/")
		data, err := os.ReadFile(filepath.Join(dir, p))
		if os.IsNotExist(err) {
			continue // exported without --entries, or archived
		}
		if err != nil {
			fail("%v", err)
		}
		for i := int64(0); len(data) > 0; i++ {
			l := int(data[0])<<8 | int(data[1])
			rec := data[2 : 2+l]
			data = data[2+l:]
			idx := b*256 + i
			hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, idx)})
			if err != nil || hs[0] != tlog.RecordHash(rec) {
				fail("entry %d: its hash is not leaf %d (%v)", idx, idx, err)
			}
			proof, err := tlog.ProveRecord(size, idx, hr)
			if err != nil {
				fail("ProveRecord %d: %v", idx, err)
			}
			if err := tlog.CheckRecord(proof, size, root, idx, tlog.RecordHash(rec)); err != nil {
				fail("CheckRecord %d: %v", idx, err)
			}
			entries++
		}
	}
	fmt.Printf("OK: checkpoint of %d leaves signed by %s; root recomputed from %d tiles; %d bundled entries proven\n", size, v.Name(), tr.reads, entries)
}
