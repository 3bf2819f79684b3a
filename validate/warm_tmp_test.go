package validate

import (
	"context"
	"os"
	"testing"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kbuild"
)

func TestWarmTmp(t *testing.T) {
	ctx := context.Background()
	h, dir := demoUser(t)
	u, err := gitrepo.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenClone(ctx, u, cachedir.Dir(""), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := kbuild.Build(ctx, kbuild.Options{Repo: c.Dir, Rev: h.Bad, Config: "tinyconfig", Fragments: demoFragments(t), Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", a)
}
