package lava

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeServer answers the REST calls New makes (version, whoami) for one
// token, and records the job definitions submitted to it.
func fakeServer(t *testing.T, token string) (*httptest.Server, *[]string) {
	t.Helper()
	var defs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := "AnonymousUser"
		if r.Header.Get("Authorization") == "Token "+token {
			user = "kbisect"
		}
		switch r.URL.Path {
		case "/api/v0.2/system/version/":
			json.NewEncoder(w).Encode(map[string]string{"version": "2023.01"})
		case "/api/v0.2/system/whoami/":
			json.NewEncoder(w).Encode(map[string]string{"user": user})
		case "/api/v0.2/jobs/":
			var body struct{ Definition string }
			b, _ := io.ReadAll(r.Body)
			json.Unmarshal(b, &body)
			defs = append(defs, body.Definition)
			json.NewEncoder(w).Encode(map[string]any{"job_ids": []string{"1.0", "1.1"}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &defs
}

// TestVisibility: jobs are personal unless asked otherwise; public and
// groups are a choice; anything else is refused before any job.
func TestVisibility(t *testing.T) {
	tests := []struct {
		flag string
		want any
	}{
		{"", "personal"},
		{"personal", "personal"},
		{"public", "public"},
		{"group:kernel, net", map[string]any{"group": []any{"kernel", "net"}}},
	}
	for _, tc := range tests {
		spec := &jobSpec{Name: "kbisect test", DeviceType: "qemu", Test: time.Minute, Visibility: tc.flag,
			Guests: []guestJob{{Role: "sender"}, {Role: "receiver"}}}
		def, err := spec.definition()
		if err != nil {
			t.Fatalf("%q: %v", tc.flag, err)
		}
		var job map[string]any
		if err := json.Unmarshal([]byte(def), &job); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(job["visibility"], tc.want) {
			t.Errorf("--lava-visibility %q: visibility %v, want %v", tc.flag, job["visibility"], tc.want)
		}
	}

	srv, defs := fakeServer(t, "s3cret")
	for _, bad := range []string{"private", "group:", "everyone"} {
		_, err := New(context.Background(), Options{URL: srv.URL, Token: "s3cret", Visibility: bad, Serve: "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "--lava-visibility") {
			t.Errorf("--lava-visibility %q: %v, want an error naming the flag", bad, err)
		}
	}
	// The default, through New, to what the server receives.
	e, err := New(context.Background(), Options{URL: srv.URL, Token: "s3cret", Serve: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	spec := &jobSpec{Name: "kbisect test", DeviceType: e.DeviceType, Test: time.Minute, Visibility: e.Visibility,
		Guests: []guestJob{{Role: "sender"}, {Role: "receiver"}}}
	def, err := spec.definition()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.Submit(context.Background(), def); err != nil {
		t.Fatal(err)
	}
	if len(*defs) != 1 || !strings.Contains((*defs)[0], `"visibility": "personal"`) {
		t.Errorf("submitted %q, want a personal job", *defs)
	}
}

// TestTokenNotInURL: a URL that carries a user or password is refused (it
// would be stored with the flags), without printing the password.
func TestTokenNotInURL(t *testing.T) {
	_, err := NewClient("https://me:hunter2@lava.example.org/", "t")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "KBISECT_LAVA_TOKEN") {
		t.Errorf("URL with a password: %v", err)
	}
}

// TestServeUnspecified: --lava-serve 0.0.0.0:0 listens everywhere and
// gives the workers this machine's address towards the server, not
// 0.0.0.0; the file is reachable there.
func TestServeUnspecified(t *testing.T) {
	lavaURL, _ := url.Parse("http://127.0.0.1:9/")
	s, err := Serve("0.0.0.0:0", lavaURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || ip.IsUnspecified() || u.Port() == "0" {
		t.Fatalf("advertised %s, want a usable address and the bound port", s.URL())
	}
	f := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(f, []byte("kernel"), 0o644)
	link, remove, err := s.Publish(f)
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "kernel" {
		t.Errorf("GET %s: %q", link, b)
	}
}
