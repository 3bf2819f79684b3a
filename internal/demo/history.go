// Package demo makes kbisect's embedded default: a real kernel history (from
// Debian's linux-source-6.1) in which one commit, among harmless ones,
// introduces a sporadic corruption of ESP payloads in the NAT-T
// transport-mode receive path, the bug class of the seed report.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/linuxsrc"
)

// History is a demo repository.
type History struct {
	// Dir is the bare repository.
	Dir string
	// Good is the first commit (the imported tree), Bad the last.
	Good, Bad string
	// Culprit is the commit that introduces the bug.
	Culprit string
	// Commits lists the commits after Good, oldest first (Bad last).
	Commits []string
}

// culpritFile is where the bug goes.
const culpritFile = "net/ipv4/esp4.c"

// harmlessFiles are touched by the harmless commits, round robin: code the
// demo kernel compiles (so a build does work) and code it does not.
var harmlessFiles = []string{
	"net/ipv4/tcp_input.c", "crypto/cbc.c", "drivers/net/virtio_net.c", "fs/read_write.c",
	"kernel/sched/core.c", "net/xfrm/xfrm_input.c", "mm/page_alloc.c", "lib/string.c",
	"net/core/skbuff.c", "crypto/authenc.c", "drivers/tty/serial/8250/8250_core.c", "fs/ext4/inode.c",
	"net/ipv4/udp.c", "kernel/time/timer.c", "crypto/hmac.c", "net/xfrm/xfrm_output.c",
	"drivers/virtio/virtio_ring.c", "fs/namei.c", "net/ipv4/ip_output.c", "block/blk-core.c",
}

// HistoryOptions say which demo history to make.
type HistoryOptions struct {
	// Tarball is the kernel source the history starts from; empty means
	// Debian's linux-source-6.1 (linuxsrc.Tarball). The demo knows the
	// esp4.c of 3.x and of 4.x to 6.1.
	Tarball string
	// Commits after the imported tree, the culprit among them (>= 4).
	Commits int
	// Seed chooses the culprit and the harmless commits' files.
	Seed uint64
	// OneIn arms the bug once in this many seconds of traffic on average
	// (default 15).
	OneIn int
	// Sizes confines the bug to some payload sizes (the zero value: all).
	Sizes PayloadSizes
}

// Make returns the demo history, creating and caching it. The same options
// give the same commit hashes on every machine.
func Make(ctx context.Context, o HistoryOptions) (*History, error) {
	if o.Commits < 4 {
		return nil, fmt.Errorf("demo history of %d commits: use at least 4", o.Commits)
	}
	if o.OneIn == 0 {
		o.OneIn = 15
	}
	if o.OneIn < 1 {
		return nil, fmt.Errorf("demo bug armed once in %d seconds: give a positive number", o.OneIn)
	}
	if o.Sizes.Mod < 0 || (o.Sizes.Mod > 0 && (o.Sizes.Rem < 0 || o.Sizes.Rem >= o.Sizes.Mod)) {
		return nil, fmt.Errorf("demo bug on payload lengths %d modulo %d: give 0 <= rem < mod", o.Sizes.Rem, o.Sizes.Mod)
	}
	base, err := linuxsrc.Open(ctx, linuxsrc.Options{Tarball: o.Tarball})
	if err != nil {
		return nil, fmt.Errorf("linux source repository: %w", err)
	}
	name := fmt.Sprintf("linux-%s-%d-%d", base.Version, o.Commits, o.Seed)
	if o.OneIn != 15 {
		name += fmt.Sprintf("-1in%d", o.OneIn)
	}
	if o.Sizes.Mod > 0 {
		name += fmt.Sprintf("-len%dmod%d", o.Sizes.Rem, o.Sizes.Mod)
	}
	dir := filepath.Join(cachedir.Dir("demo"), name+".git")
	if h, err := readHistory(ctx, dir); err == nil {
		return h, nil
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if _, err := git(ctx, "", nil, "clone", "--quiet", "--bare", "--shared", base.Dir, tmp); err != nil {
		return nil, err
	}
	if err := writeHistory(ctx, tmp, base.Commit, o); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return readHistory(ctx, dir)
}

// writeHistory adds n commits on top of base without a checkout: blobs are
// written with hash-object and trees through a private index.
func writeHistory(ctx context.Context, dir, base string, o HistoryOptions) error {
	n := o.Commits
	rng := rand.New(rand.NewPCG(o.Seed, 0x6b626973))
	culprit := n/4 + rng.IntN(n/2) // never the first or last commits
	index := filepath.Join(dir, "demo-index")
	defer os.Remove(index)
	env := []string{"GIT_INDEX_FILE=" + index}
	if _, err := git(ctx, dir, env, "read-tree", base); err != nil {
		return err
	}
	parent := base
	for i := 0; i < n; i++ {
		var path, msg string
		var content []byte
		old := func(p string) ([]byte, error) {
			out, err := git(ctx, dir, nil, "cat-file", "blob", parent+":"+p)
			return []byte(out), err
		}
		if i == culprit {
			path = culpritFile
			src, err := old(path)
			if err != nil {
				return err
			}
			if content, err = injectBug(src, o.OneIn, o.Sizes); err != nil {
				return err
			}
			msg = culpritMessage
		} else {
			// The next file the tree has (trimmed trees lack some).
			first := (i + rng.IntN(3)) % len(harmlessFiles)
			var src []byte
			var err error
			for k := 0; k < len(harmlessFiles); k++ {
				path = harmlessFiles[(first+k)%len(harmlessFiles)]
				if src, err = old(path); err == nil {
					break
				}
			}
			if err != nil {
				return fmt.Errorf("demo: the tree has none of the files the harmless commits change: %w", err)
			}
			content = append(src, fmt.Sprintf("/* kbisect demo: harmless change %d */\n", i+1)...)
			msg = fmt.Sprintf("%s: harmless change %d\n\nA comment only: the kernel's code is unchanged.\n", subsystem(path), i+1)
		}
		blob, err := gitIn(ctx, dir, nil, content, "hash-object", "-w", "--stdin")
		if err != nil {
			return err
		}
		if _, err := git(ctx, dir, env, "update-index", "--cacheinfo", "100644,"+strings.TrimSpace(blob)+","+path); err != nil {
			return err
		}
		tree, err := git(ctx, dir, env, "write-tree")
		if err != nil {
			return err
		}
		date := fmt.Sprintf("%d +0000", 1700000000+86400*(i+1))
		cenv := []string{
			"GIT_AUTHOR_NAME=kbisect demo", "GIT_AUTHOR_EMAIL=demo@kbisect.invalid", "GIT_AUTHOR_DATE=" + date,
			"GIT_COMMITTER_NAME=kbisect demo", "GIT_COMMITTER_EMAIL=demo@kbisect.invalid", "GIT_COMMITTER_DATE=" + date,
		}
		commit, err := gitIn(ctx, dir, cenv, []byte(msg), "commit-tree", strings.TrimSpace(tree), "-p", parent)
		if err != nil {
			return err
		}
		parent = strings.TrimSpace(commit)
		if i == culprit {
			if _, err := git(ctx, dir, nil, "update-ref", "refs/demo/culprit", parent); err != nil {
				return err
			}
		}
	}
	if _, err := git(ctx, dir, nil, "update-ref", "refs/heads/demo", parent); err != nil {
		return err
	}
	_, err := git(ctx, dir, nil, "update-ref", "refs/demo/good", base)
	return err
}

func subsystem(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) > 2 {
		return parts[0] + "/" + parts[1]
	}
	return parts[0]
}

func readHistory(ctx context.Context, dir string) (*History, error) {
	h := &History{Dir: dir}
	for _, r := range []struct {
		ref string
		out *string
	}{{"refs/demo/good", &h.Good}, {"refs/heads/demo", &h.Bad}, {"refs/demo/culprit", &h.Culprit}} {
		v, err := git(ctx, dir, nil, "rev-parse", "--verify", r.ref)
		if err != nil {
			return nil, err
		}
		*r.out = strings.TrimSpace(v)
	}
	out, err := git(ctx, dir, nil, "rev-list", "--reverse", h.Bad, "^"+h.Good)
	if err != nil {
		return nil, err
	}
	h.Commits = strings.Fields(out)
	return h, nil
}

func git(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	return gitIn(ctx, dir, env, nil, args...)
}

func gitIn(ctx context.Context, dir string, env []string, stdin []byte, args ...string) (string, error) {
	return gitrepo.Run(ctx, gitrepo.Cmd{Dir: dir, Env: env, Stdin: stdin}, args...)
}
