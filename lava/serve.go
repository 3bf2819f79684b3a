package lava

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
)

// Publisher makes a run's files (kernels, initramfs) reachable by the
// lab's workers over HTTP.
type Publisher interface {
	// Publish returns the URL of the file at path; remove withdraws it.
	Publish(path string) (u string, remove func(), err error)
}

// Server serves published files from this process over HTTP, each under a
// random path, for as long as they are published.
type Server struct {
	base  string
	ln    net.Listener
	srv   *http.Server
	mu    sync.Mutex
	files map[string]string // url path -> file
}

// Serve starts a Server listening on listen (host:port; port 0 picks one).
// An empty host means the address of this machine the LAVA server at
// lavaURL is reached from, which is what its workers are most likely to
// reach too; an unspecified one (0.0.0.0, ::) listens on every address
// and gives the workers that one.
func Serve(listen string, lavaURL *url.URL) (*Server, error) {
	host, port, err := net.SplitHostPort(listen)
	if listen == "" {
		host, port, err = "", "0", nil
	}
	if err != nil {
		return nil, fmt.Errorf("--lava-serve %q: give host:port, e.g. 192.0.2.10:8080 or :0", listen)
	}
	advertise := host
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		advertise, err = outboundAddr(lavaURL)
		if err != nil {
			return nil, err
		}
		if host == "" {
			host = advertise
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("serve artifacts on %s: %w", net.JoinHostPort(host, port), err)
	}
	s := &Server{ln: ln, files: map[string]string{}}
	_, bound, _ := net.SplitHostPort(ln.Addr().String())
	s.base = "http://" + net.JoinHostPort(advertise, bound)
	s.srv = &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 30 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// outboundAddr returns the local address used to reach the server of u.
func outboundAddr(u *url.URL) (string, error) {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return "", fmt.Errorf("find this machine's address towards %s: %w (give --lava-serve HOST:PORT)", u.Host, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.base }

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, f)
}

// Publish implements Publisher.
func (s *Server) Publish(file string) (string, func(), error) {
	if _, err := os.Stat(file); err != nil {
		return "", nil, fmt.Errorf("publish %s: %w", file, err)
	}
	p := "/" + randomHex(12) + "/" + url.PathEscape(filepath.Base(file))
	s.mu.Lock()
	s.files[p] = file
	s.mu.Unlock()
	return s.base + p, func() {
		s.mu.Lock()
		delete(s.files, p)
		s.mu.Unlock()
	}, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Dir publishes files by copying them into a directory that a web server
// the workers reach serves under a URL prefix.
type Dir struct {
	Dir    string
	Prefix string
}

// Publish implements Publisher.
func (d *Dir) Publish(file string) (string, func(), error) {
	sub := randomHex(12)
	dst := filepath.Join(d.Dir, sub, filepath.Base(file))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", nil, fmt.Errorf("publish %s: %w", file, err)
	}
	if err := fsutil.CopyFile(file, dst, 0o644); err != nil {
		return "", nil, fmt.Errorf("publish %s: %w", file, err)
	}
	u := strings.TrimSuffix(d.Prefix, "/") + "/" + path.Join(sub, url.PathEscape(filepath.Base(file)))
	return u, func() { os.RemoveAll(filepath.Join(d.Dir, sub)) }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return hex.EncodeToString(b)
}
