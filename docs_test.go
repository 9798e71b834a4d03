package kcl

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every message kcl logs appears in docs/troubleshooting.md.
func TestTroubleshootingCoversEveryLogMessage(t *testing.T) {
	doc, err := os.ReadFile("docs/troubleshooting.md")
	require.NoError(t, err)
	logCall := regexp.MustCompile(`\.(?:Debug|Info|Warn|Error|Log)\([^"]*"(kcl: [^"]*)"`)
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range logCall.FindAllStringSubmatch(string(src), -1) {
			found++
			msg := strings.TrimSpace(m[1])
			assert.Contains(t, string(doc), "`"+msg, "%s logs %q, missing from docs/troubleshooting.md", f, msg)
		}
	}
	assert.Greater(t, found, 25, "the pattern still finds kcl's log calls")
}
