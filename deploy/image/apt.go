package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// A pkg is one Debian package at the version apt would install now (its candidate).
type pkg struct {
	name, version, arch, sha256 string
	depends                     []string // Depends and Pre-Depends, by name
	deb                         string   // the .deb in the cache, once fetched
}

func (p *pkg) String() string { return p.name + " " + p.version }

// cacheName is the file apt-get download writes for p (a version's epoch colon escaped as %3a), which
// makes the cache one file per version.
func (p *pkg) cacheName() string {
	return p.name + "_" + strings.ReplaceAll(p.version, ":", "%3a") + "_" + p.arch + ".deb"
}

// aptCache is apt's binary cache of its lists, kept beside the .debs: Debian's container images turn
// the system's off (docker-clean), and without one each apt-cache call reads every list again (0.6 s
// against 0.15 s). apt rebuilds it when the lists change. Set by main from -cache.
var aptCache string

// aptArgs prefixes an apt command's arguments with the binary cache's location.
func aptArgs(args ...string) []string {
	if aptCache == "" {
		return args
	}
	return append([]string{"-o", "Dir::Cache::pkgcache=" + aptCache}, args...)
}

// candidates looks up what apt would install for names, from apt's lists alone (no network): the
// version, architecture, checksum and dependencies of each.
func candidates(arch string, names []string) ([]*pkg, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("apt-cache", aptArgs(append([]string{"show", "--no-all-versions"}, names...)...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s: %v: %s", strings.Join(names, " "), err, strings.TrimSpace(stderr.String()))
	}
	records, err := parseStanzas(string(out))
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s: %v", strings.Join(names, " "), err)
	}
	byName := map[string]*pkg{}
	for _, r := range records {
		if r["architecture"] != arch && r["architecture"] != "all" {
			continue // a foreign architecture's copy, when dpkg has several
		}
		p := &pkg{name: r["package"], version: r["version"], arch: r["architecture"], sha256: r["sha256"]}
		if p.name == "" || p.version == "" || len(p.sha256) != 64 {
			return nil, fmt.Errorf("apt-cache show: a record without Package, Version or SHA256: %q", r)
		}
		for _, field := range []string{"pre-depends", "depends"} {
			deps, err := dependsNames(r[field])
			if err != nil {
				return nil, fmt.Errorf("%s %s: %v", p, field, err)
			}
			p.depends = append(p.depends, deps...)
		}
		byName[p.name] = p
	}
	var pkgs []*pkg
	for _, n := range names {
		p, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("apt has no %s package named %s (a virtual package, or apt-get update not run)", arch, n)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// closure returns roots and everything they depend on, transitively, in the order found.
func closure(arch string, roots []string) ([]*pkg, error) {
	var all []*pkg
	seen := map[string]bool{}
	next := slices.Clone(roots)
	for _, n := range next {
		seen[n] = true
	}
	for len(next) > 0 {
		found, err := candidates(arch, next)
		if err != nil {
			return nil, err
		}
		all = append(all, found...)
		next = nil
		for _, p := range found {
			for _, d := range p.depends {
				if !seen[d] {
					seen[d] = true
					next = append(next, d)
				}
			}
		}
	}
	return all, nil
}

// fetch makes sure each package's .deb is in cache, checked against apt's SHA256, downloading with
// apt-get download only those that are not: a warm run reads the disk alone. It returns how many it
// downloaded.
func fetch(cache string, pkgs []*pkg) (int, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return 0, fmt.Errorf("deb cache: %v", err)
	}
	var missing []*pkg
	for _, p := range pkgs {
		p.deb = filepath.Join(cache, p.cacheName())
		switch err := checkSum(p.deb, p.sha256); {
		case err == nil:
		case os.IsNotExist(err):
			missing = append(missing, p)
		default:
			fmt.Fprintf(os.Stderr, "image: %v; downloading it again\n", err)
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	// A directory of its own in the cache: a download cut short leaves nothing under a cache name,
	// and the rename below stays on one file system.
	tmp, err := os.MkdirTemp(cache, ".download-")
	if err != nil {
		return 0, fmt.Errorf("deb cache: %v", err)
	}
	defer os.RemoveAll(tmp)
	// apt drops to _apt to download when run as root; let it write here.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return 0, err
	}
	args := []string{"download", "-q"}
	for _, p := range missing {
		if p.arch == "all" {
			args = append(args, p.name+"="+p.version)
		} else {
			args = append(args, p.name+":"+p.arch+"="+p.version)
		}
	}
	cmd := exec.Command("apt-get", aptArgs(args...)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		// A version apt's lists name but the mirror no longer has is the usual cause.
		return 0, fmt.Errorf("apt-get %s: %v (are apt's lists current? apt-get update)\n%s", strings.Join(args, " "), err, out)
	}
	for _, p := range missing {
		got := filepath.Join(tmp, p.cacheName())
		if err := checkSum(got, p.sha256); err != nil {
			return 0, fmt.Errorf("apt-get download %s: %v", p, err)
		}
		if os.Geteuid() == 0 {
			_ = os.Chown(got, 0, 0) // _apt's otherwise
		}
		if err := os.Rename(got, p.deb); err != nil {
			return 0, err
		}
	}
	return len(missing), nil
}

// checkSum returns an error naming file unless its SHA256 is want (os.IsNotExist when it is absent).
func checkSum(file, want string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s has SHA256 %s, apt says %s", file, got, want)
	}
	return nil
}
