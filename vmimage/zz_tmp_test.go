package vmimage

import (
	"context"
	"fmt"
	"os"
	"testing"
)

func TestZZBuildFixed(t *testing.T) {
	src := standInSource(t)
	for _, sh := range []bool{false, true} {
		img, err := Build(context.Background(), Options{SourceDir: src, CacheDir: "/tmp/vmi/cache", Shell: sh})
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(img.Path, fmt.Sprintf("/tmp/vmi/img-shell-%v.cpio", sh))
	}
}
