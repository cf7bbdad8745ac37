// Command sumdb_gen writes a real, signed checksum database for the modules
// of a GOPROXY file-layout tree, in the layout a proxy serves it under
// /sumdb/<name>/ (supported, latest, lookup/..., tile/...), so that tests
// can have the real go command verify modules through gomodproxy.
//
// Standard library only (the tests run offline). It re-implements what the
// Go team's x/mod sumdb packages specify: record text (go.sum lines),
// RFC 6962 tree hashing, tiles of height 8, and notes signed with Ed25519.
//
// Usage: go run sumdb_gen.go ROOT NAME path@version[=tamper]...
//
// The first module gets record 0 (in a complete tile); the others come
// after filler records, past the first 256 (in a partial tile). "=tamper"
// records a wrong zip hash for that module, which the go command must
// refuse. Prints the verifier key (a GOSUMDB value) on stdout.
package main

import (
	"archive/zip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const height = 8
const fillers = 290

type hash [32]byte

func recordHash(data []byte) hash { return sha256.Sum256(append([]byte{0}, data...)) }

func nodeHash(l, r hash) hash {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// treeHash is the RFC 6962 Merkle tree hash of the leaves.
func treeHash(leaves []hash) hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return nodeHash(treeHash(leaves[:k]), treeHash(leaves[k:]))
}

// escape is the proxy protocol's case-encoding: upper case becomes '!' + lower case.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + 'a' - 'A')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// hash1 is the go.sum "h1:" hash of named files.
func hash1(names []string, read func(string) []byte) string {
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%x  %s\n", sha256.Sum256(read(n)), n)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func record(root, spec string) (path, version string, text []byte) {
	spec, tamper := strings.CutSuffix(spec, "=tamper")
	path, version, ok := strings.Cut(spec, "@")
	if !ok {
		must(fmt.Errorf("bad module spec %q", spec))
	}
	base := filepath.Join(root, escape(path), "@v", escape(version))
	z, err := zip.OpenReader(base + ".zip")
	must(err)
	defer z.Close()
	files := map[string]*zip.File{}
	var names []string
	for _, f := range z.File {
		files[f.Name] = f
		names = append(names, f.Name)
	}
	zipHash := hash1(names, func(n string) []byte {
		r, err := files[n].Open()
		must(err)
		defer r.Close()
		b, err := io.ReadAll(r)
		must(err)
		return b
	})
	if tamper {
		zipHash = hash1([]string{"x"}, func(string) []byte { return []byte("not the module") })
	}
	mod, err := os.ReadFile(base + ".mod")
	must(err)
	modHash := hash1([]string{"go.mod"}, func(string) []byte { return mod })
	return path, version, []byte(fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, version, zipHash, path, version, modHash))
}

func tilePath(level int, n, w int) string {
	num := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		num = fmt.Sprintf("x%03d/%s", n%1000, num)
	}
	l := fmt.Sprint(level)
	if level < 0 {
		l = "data"
	}
	p := ""
	if w != 1<<height {
		p = fmt.Sprintf(".p/%d", w)
	}
	return fmt.Sprintf("tile/%d/%s/%s%s", height, l, num, p)
}

func main() {
	if len(os.Args) < 4 {
		must(fmt.Errorf("usage: sumdb_gen ROOT NAME path@version[=tamper]..."))
	}
	root, name, specs := os.Args[1], os.Args[2], os.Args[3:]
	dir := filepath.Join(root, "sumdb", name)
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, 0o644))
	}

	type real struct {
		id            int
		path, version string
	}
	var texts [][]byte
	var reals []real
	add := func(spec string) {
		p, v, t := record(root, spec)
		reals = append(reals, real{len(texts), p, v})
		texts = append(texts, t)
	}
	add(specs[0])
	for i := 0; i < fillers; i++ {
		texts = append(texts, []byte(fmt.Sprintf("example.net/filler%d v1.0.0 h1:%s\nexample.net/filler%d v1.0.0/go.mod h1:%s\n",
			i, base64.StdEncoding.EncodeToString(make([]byte, 32)), i, base64.StdEncoding.EncodeToString(make([]byte, 32)))))
	}
	for _, s := range specs[1:] {
		add(s)
	}
	n := len(texts)
	leaves := make([]hash, n)
	for i, t := range texts {
		leaves[i] = recordHash(t)
	}

	// Hash tiles: level L holds the hashes of the complete subtrees of
	// 2^(L*height) leaves; every tile is complete but the one at the edge.
	for level := 0; ; level++ {
		span := 1 << (level * height)
		count := n / span
		if count == 0 {
			break
		}
		for t := 0; t*(1<<height) < count; t++ {
			w := min(count-t*(1<<height), 1<<height)
			var data []byte
			for i := 0; i < w; i++ {
				idx := t*(1<<height) + i
				h := treeHash(leaves[idx*span : (idx+1)*span])
				data = append(data, h[:]...)
			}
			write(tilePath(level, t, w), data)
		}
	}
	// Data tiles: the records as a lookup formats them (x/mod's
	// FormatRecord): the id, the text, a blank line.
	for t := 0; t*(1<<height) < n; t++ {
		w := min(n-t*(1<<height), 1<<height)
		var data []byte
		for i := 0; i < w; i++ {
			data = append(data, fmt.Sprintf("%d\n", t*(1<<height)+i)...)
			data = append(data, texts[t*(1<<height)+i]...)
			data = append(data, '\n')
		}
		write(tilePath(-1, t, w), data)
	}

	// A fixed test key: the database is rebuilt identically every run.
	seed := sha256.Sum256([]byte("gomodproxy test checksum database key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pubkey := append([]byte{1}, priv.Public().(ed25519.PublicKey)...)
	kh := sha256.Sum256(append([]byte(name+"\n"), pubkey...))
	keyHash := binary.BigEndian.Uint32(kh[:4])
	top := treeHash(leaves)
	text := fmt.Sprintf("go.sum database tree\n%d\n%s\n", n, base64.StdEncoding.EncodeToString(top[:]))
	var hb [4]byte
	binary.BigEndian.PutUint32(hb[:], keyHash)
	sig := ed25519.Sign(priv, []byte(text))
	note := text + "\n\u2014 " + name + " " + base64.StdEncoding.EncodeToString(append(hb[:], sig...)) + "\n"

	write("supported", nil)
	write("latest", []byte(note))
	for _, r := range reals {
		write("lookup/"+escape(r.path)+"@"+escape(r.version), []byte(fmt.Sprintf("%d\n%s\n%s", r.id, texts[r.id], note)))
	}
	fmt.Printf("%s+%08x+%s\n", name, keyHash, base64.StdEncoding.EncodeToString(pubkey))
}
