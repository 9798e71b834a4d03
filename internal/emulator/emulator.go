// Package emulator starts the Kinesis and DynamoDB emulators that kcl's tests
// and demo run against: kinesis-local, kinesalite and dynalite from the npm
// registry, installed under emulators/ by `npm ci`, bound to loopback on free
// ports. Users of kcl never import it.
package emulator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kind names one emulator.
type Kind string

const (
	KinesisLocal Kind = "kinesis-local" // Kinesis with resharding, ChildShards, fan-out
	Kinesalite   Kind = "kinesalite"    // Kinesis without ChildShards or ShardFilter
	Dynalite     Kind = "dynalite"      // DynamoDB
)

// Server is one running emulator.
type Server struct {
	Kind     Kind
	Endpoint string // http://127.0.0.1:PORT
	TLS      string // https endpoint (kinesis-local only), for fan-out over HTTP/2
	cmd      *exec.Cmd
	ports    []int // every port the emulator must listen on
	exited   chan struct{}
	log      *os.File
}

// Dir finds the emulators/ folder: $KCL_EMULATORS_DIR, or the one beside the
// module's go.mod above the working directory.
func Dir() (string, error) {
	if d := os.Getenv("KCL_EMULATORS_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "emulators"), nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("emulator: no go.mod above the working directory; set KCL_EMULATORS_DIR")
		}
	}
}

// Start runs one emulator and waits until it answers on ports it owns. Its
// output goes to a log file in os.TempDir, named in errors. Ports are picked
// free, but another process (test binaries run in parallel) may take one
// before the emulator binds it: an emulator that exits while starting is
// started again on other ports.
func Start(ctx context.Context, kind Kind) (*Server, error) {
	var err error
	for range 5 {
		var s *Server
		if s, err = start(ctx, kind); err == nil || !errors.Is(err, errExited) {
			return s, err
		}
	}
	return nil, err
}

// errExited says the emulator process ended while starting.
var errExited = errors.New("exited while starting")

// ErrNotInstalled says node, or an emulator's npm package, is missing.
var ErrNotInstalled = errors.New("not installed")

// Installed reports, without starting anything, whether node and the given
// emulators are installed: if not, an error wrapping ErrNotInstalled says
// what is missing.
func Installed(kinds ...Kind) error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("emulator: node is %w (Node.js is not on PATH)", ErrNotInstalled)
	}
	dir, err := Dir()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	for _, kind := range kinds {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", string(kind))); err != nil {
			return fmt.Errorf("emulator: %s is %w: run `npm ci --prefix %s`", kind, ErrNotInstalled, dir)
		}
	}
	return nil
}

// RequireEnv names the environment variable that makes missing emulators a
// failure instead of a reason to skip. scripts/test, and so CI, sets it.
const RequireEnv = "KCL_REQUIRE_EMULATORS"

// Missing is for a test binary's TestMain. Unless RequireEnv is set, when
// node or the given emulators are not installed it prints one line saying
// so and how to run the tests that need them, and returns why: those tests
// skip. It returns nil when the emulators are to be started (and a failure
// to start them fails the tests).
func Missing(kinds ...Kind) error {
	if os.Getenv(RequireEnv) != "" {
		return nil
	}
	err := Installed(kinds...)
	if err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "kcl: emulators not installed (run ./scripts/test): skipping the tests that need them")
	return err
}

func start(ctx context.Context, kind Kind) (*Server, error) {
	if err := Installed(kind); err != nil {
		return nil, err
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Kind: kind, Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{}), ports: []int{port}}
	preload := filepath.Join(dir, "loopback.js")
	abortSafe := filepath.Join(dir, "client-abort.js")
	var args []string
	env := os.Environ()
	switch kind {
	case KinesisLocal:
		tlsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		s.TLS = "https://127.0.0.1:" + strconv.Itoa(tlsPort)
		s.ports = append(s.ports, tlsPort)
		args = []string{"-r", preload, filepath.Join(dir, "node_modules/kinesis-local/main.js")}
		env = append(env,
			"KINESIS_MOCK_PLAIN_PORT="+strconv.Itoa(port),
			"KINESIS_MOCK_TLS_PORT="+strconv.Itoa(tlsPort),
			"KINESIS_MOCK_CERT_PATH="+filepath.Join(dir, "node_modules/kinesis-local/server.json"),
			"CREATE_STREAM_DURATION=100ms", "DELETE_STREAM_DURATION=100ms",
			"SPLIT_SHARD_DURATION=100ms", "MERGE_SHARDS_DURATION=100ms",
			"UPDATE_SHARD_COUNT_DURATION=100ms", "REGISTER_STREAM_CONSUMER_DURATION=100ms",
			"DEREGISTER_STREAM_CONSUMER_DURATION=100ms", "START_STREAM_ENCRYPTION_DURATION=100ms",
			"SHARD_LIMIT=2000", "LOG_LEVEL=WARN") // the tests of one package share it, and leave their streams
	case Kinesalite:
		args = []string{"-r", preload, "-r", abortSafe, filepath.Join(dir, "node_modules/kinesalite/cli.js"), "--port", strconv.Itoa(port),
			"--createStreamMs", "50", "--deleteStreamMs", "50", "--updateStreamMs", "50", "--shardLimit", "2000"}
	case Dynalite:
		args = []string{"-r", abortSafe, filepath.Join(dir, "node_modules/dynalite/cli.js"), "--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"}
	default:
		return nil, fmt.Errorf("emulator: unknown kind %q", kind)
	}
	s.log, err = os.CreateTemp("", "kcl-"+string(kind)+"-*.log")
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command("node", args...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// The emulator dies with whoever started it, even on SIGKILL.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.log.Close()
		return nil, fmt.Errorf("emulator: starting %s: %w", kind, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	url := s.Endpoint
	if s.Kind == KinesisLocal {
		url += "/healthcheck"
	}
	deadline := time.Now().Add(timeout)
	for {
		// Ready: it answers, and the listening sockets are its own, not
		// another process's that took the port first.
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if s.ownsPorts() {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("emulator: %s %w; see %s", s.Kind, errExited, s.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("emulator: %s not ready after %v; see %s", s.Kind, timeout, s.log.Name())
		}
	}
}

// ownsPorts reports whether the emulator process holds a listening socket on
// each of its ports (Linux: /proc/net/tcp matched with the process's fds).
func (s *Server) ownsPorts() bool {
	listening := map[string]int{} // socket inode -> port
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil {
				listening[f[9]] = int(port)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		return false
	}
	owned := map[int]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.cmd.Process.Pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			if port, ok := listening[strings.TrimSuffix(inode, "]")]; ok {
				owned[port] = true
			}
		}
	}
	for _, p := range s.ports {
		if !owned[p] {
			return false
		}
	}
	return true
}

// Exited is closed when the emulator process has ended, stopped or not.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Stop ends the emulator: SIGTERM, then SIGKILL after a grace period
// (kinesis-local ignores SIGTERM while busy).
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(2 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.log.Close()
	os.Remove(s.log.Name())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
