package emulator

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// missing is why the emulators are not installed (nil if they are): the
// tests that start one skip.
var missing error

func TestMain(m *testing.M) {
	missing = Missing(Dynalite)
	os.Exit(m.Run())
}

func startDynalite(t *testing.T) *Server {
	t.Helper()
	if missing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", missing)
	}
	s, err := Start(context.Background(), Dynalite)
	require.NoError(t, err)
	return s
}

// Readiness counts only sockets the emulator itself listens on: a port that
// answers because another process holds it is not the emulator's.
func TestOwnsPortsTellsTheEmulatorsListenerFromAnotherProcesss(t *testing.T) {
	s := startDynalite(t)
	defer s.Stop()
	assert.True(t, s.ownsPorts())

	l, err := net.Listen("tcp", "127.0.0.1:0") // held by this test process, not the emulator
	require.NoError(t, err)
	defer l.Close()
	other := &Server{cmd: s.cmd, ports: []int{l.Addr().(*net.TCPAddr).Port}}
	assert.False(t, other.ownsPorts())
}

// A client that aborts a request mid-flight (a cancelled context) does not
// kill the emulator: dynalite 4.0.0 rethrows the request's error unless
// client-abort.js is preloaded.
func TestEmulatorSurvivesAClientAbortingARequest(t *testing.T) {
	s := startDynalite(t)
	defer s.Stop()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.Endpoint, "http://"))
	require.NoError(t, err)
	// Headers promise a body that never comes; the server's "100 Continue"
	// says it is handling the request; then the client hangs up.
	_, err = conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	status, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, status, "100 Continue")
	_, err = conn.Write([]byte("{"))
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	// The emulator saw the request fail (its log says so) and lives on.
	deadline := time.After(10 * time.Second)
	for {
		logged, err := os.ReadFile(s.log.Name())
		require.NoError(t, err)
		if strings.Contains(string(logged), "client aborted a request") {
			break
		}
		select {
		case <-s.exited:
			t.Fatalf("the emulator died when a client aborted a request:\n%s", logged)
		case <-deadline:
			t.Fatalf("the emulator never saw the aborted request:\n%s", logged)
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp, err := http.Post(s.Endpoint, "application/x-amz-json-1.0", strings.NewReader("{}"))
	require.NoError(t, err, "still serving")
	resp.Body.Close()
	select {
	case <-s.exited:
		t.Fatal("the emulator died when a client aborted a request")
	default:
	}
	assert.True(t, s.ownsPorts(), "still listening")
}

// Without node the emulators are not installed, which Missing reports
// unless KCL_REQUIRE_EMULATORS asks for them (then starting them fails).
func TestMissingWithoutNodeUnlessRequired(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireEnv, "")
	err := Installed(Dynalite)
	require.ErrorIs(t, err, ErrNotInstalled)
	assert.Contains(t, err.Error(), "node")
	require.ErrorIs(t, Missing(Dynalite), ErrNotInstalled)

	t.Setenv(RequireEnv, "1")
	require.NoError(t, Missing(Dynalite))
	_, err = Start(context.Background(), Dynalite)
	require.ErrorIs(t, err, ErrNotInstalled)
}
