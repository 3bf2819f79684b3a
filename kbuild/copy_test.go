package kbuild

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestArtifactCopyTo: the copy has every file, modules included, and is
// the artifact read back from the new directory.
func TestArtifactCopyTo(t *testing.T) {
	src := t.TempDir()
	meta, _ := json.Marshal(&Artifact{BuiltCommit: "0123456789abcdef", Release: "6.1.0"})
	for name, data := range map[string]string{"meta.json": string(meta), "bzImage": "b", "vmlinux": "v", "config": "CONFIG_X=y\n", "build.log": "ok\n", "modules/kernel/x.ko": "m"} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := ReadArtifact(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	c, err := a.CopyTo(dst)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dir != dst || c.BzImage != filepath.Join(dst, "bzImage") || c.Modules != filepath.Join(dst, "modules") ||
		c.Commit != "0123456789abcdef" || c.Release != "6.1.0" {
		t.Errorf("copy %+v", c)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "modules/kernel/x.ko")); err != nil || string(b) != "m" {
		t.Errorf("module: %q %v", b, err)
	}
	if _, err := a.CopyTo(filepath.Join(src, "meta.json", "x")); err == nil {
		t.Error("copy under a file: no error")
	}
}
