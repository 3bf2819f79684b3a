package kconfigs

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/kbisect/kbisect/internal/linuxsrc"
)

// TestUpdateOldconfig checks that trees before 3.7 get oldconfig fed with
// empty answers (a fake tree whose oldconfig reads two answers).
func TestUpdateOldconfig(t *testing.T) {
	for _, tc := range []struct {
		version, target string
	}{
		{"3\nPATCHLEVEL = 6\nSUBLEVEL = 11", "oldconfig"},
		{"3\nPATCHLEVEL = 7\nSUBLEVEL = 0", "olddefconfig"},
	} {
		src := writeTree(t, map[string]string{"Makefile": "VERSION = " + tc.version + "\n" +
			"oldconfig:\n\t@read a && read b && test -z \"$$a$$b\" && echo CONFIG_ANSWERED=y >> $(O)/.config\n" +
			"olddefconfig:\n\t@echo CONFIG_DEFAULTED=y >> $(O)/.config\n"})
		m := &Make{SrcDir: src, ObjDir: filepath.Join(t.TempDir(), "obj")}
		in, _ := ParseConfig([]byte("CONFIG_USER=y\n"))
		out, err := m.Update(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		want := map[string]string{"oldconfig": "ANSWERED", "olddefconfig": "DEFAULTED"}[tc.target]
		if out.Value("USER") != "y" || out.Value(want) != "y" {
			t.Errorf("%s: config %q", tc.target, out.Bytes())
		}
	}
}

func TestUpdateFailure(t *testing.T) {
	src := writeTree(t, map[string]string{"Makefile": "VERSION = 6\nPATCHLEVEL = 1\nolddefconfig:\n\t@echo 'Kconfig:12: syntax error' >&2; exit 1\n"})
	m := &Make{SrcDir: src, ObjDir: filepath.Join(t.TempDir(), "obj")}
	_, err := m.Update(context.Background(), NewConfig())
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "Kconfig:12: syntax error") {
		t.Errorf("err = %v, want a ConfigError quoting make's output", err)
	}
}

// kernelTree exports the files the config targets need from the 6.1
// linux-src repository (22 MB instead of 1.5 GB).
func kernelTree(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the linux-src repository")
	}
	testenv.NeedLinuxSource(t)
	repo, err := linuxsrc.Repo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive := exec.Command("git", "-C", repo, "archive", "HEAD", "--", "Makefile", "Kconfig", "scripts",
		"arch/x86/Makefile", "arch/x86/Makefile_32.cpu", "arch/x86/configs", "kernel/configs", ":(glob)**/Kconfig*")
	untar := exec.Command("tar", "-x", "-C", dir)
	untar.Stdin, _ = archive.StdoutPipe()
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatal(err)
	}
	if err := untar.Wait(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPrepareReal(t *testing.T) {
	src := kernelTree(t)
	ctx := context.Background()
	m := &Make{SrcDir: src, ObjDir: filepath.Join(t.TempDir(), "obj")}
	base, err := m.Base(ctx, "tinyconfig")
	if err != nil {
		t.Fatal(err)
	}
	if base.Value("XFRM_USER") != "n" || base.Value("VIRTIO_NET") != "n" {
		t.Fatal("tinyconfig already has XFRM_USER or VIRTIO_NET: the test needs a config that lacks them")
	}

	t.Run("defaults", func(t *testing.T) {
		r, err := m.Prepare(ctx, base, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		var rep bytes.Buffer
		r.Report(&rep)
		t.Logf("report:\n%s", rep.String())
		if err := r.Err(); err != nil {
			t.Fatalf("default fragments do not survive on 6.1: %v", err)
		}
		for _, s := range []string{"XFRM_USER", "INET_ESP", "VIRTIO_NET", "VIRTIO_PCI", "SERIAL_8250_CONSOLE", "EVENTFD", "PVH", "XFRM"} {
			if r.Final.Value(s) != "y" {
				t.Errorf("final config: CONFIG_%s=%s, want y", s, r.Final.Value(s))
			}
		}
		for _, want := range []string{"added or changed by fragment natt-esp:", "CONFIG_XFRM_USER: (absent) -> y",
			"added or changed by fragment qemu-x86_64:", "CONFIG_VIRTIO_NET: (absent) -> y",
			"pulled in by dependencies", "gated by version):", "CONFIG_EXPERIMENTAL", "CONFIG_INET_XFRM_MODE_TRANSPORT"} {
			if !strings.Contains(rep.String(), want) {
				t.Errorf("report lacks %q", want)
			}
		}
		if !regexp.MustCompile(`(?m)^  .* XFRM_ALGO( |$)`).MatchString(rep.String()) {
			t.Error("report does not list XFRM_ALGO among the symbols pulled in by dependencies")
		}
		for _, p := range r.Problems {
			t.Logf("problem: %s", p)
		}
	})

	t.Run("unmet", func(t *testing.T) {
		user, _ := ParseFragment("user.config", []byte("# CONFIG_PCI is not set\nCONFIG_KBISECT_NO_SUCH_SYMBOL=y\n"))
		r, err := m.Prepare(ctx, base, append(Defaults(), user))
		if err != nil {
			t.Fatal(err)
		}
		err = r.Err()
		var ce *CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("Err() = %v, want a CheckError", err)
		}
		reasons := map[string]string{}
		for _, p := range ce.Problems {
			reasons[p.Symbol] = p.Reason
		}
		if !strings.Contains(reasons["VIRTIO_PCI"], "depends on PCI [PCI=n]") {
			t.Errorf("VIRTIO_PCI reason %q does not name PCI", reasons["VIRTIO_PCI"])
		}
		if !strings.Contains(reasons["KBISECT_NO_SUCH_SYMBOL"], "does not exist in this version") {
			t.Errorf("unknown symbol reason %q", reasons["KBISECT_NO_SUCH_SYMBOL"])
		}
		if _, ok := reasons["PVPANIC_PCI"]; ok {
			t.Error("optional PVPANIC_PCI reported as a failure")
		}
		t.Logf("error: %v", err)
	})
}
