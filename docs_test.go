package kcl

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
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

// README's option table gives, for every option, the default New fills in
// (withDefaults), and every option New fills a default for has a row.
func TestREADMEOptionDefaultsAreWhatNewFillsIn(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	rows := map[string]string{} // option name -> its Default cell
	inTable := false
	for _, line := range strings.Split(string(readme), "\n") {
		switch {
		case strings.HasPrefix(line, "| Option | Default |"):
			inTable = true
		case inTable && !strings.HasPrefix(line, "|"):
			inTable = false
		case inTable && !strings.HasPrefix(line, "|---"):
			cells := strings.Split(line, "|")
			require.GreaterOrEqual(t, len(cells), 4, line)
			names := strings.Split(cells[1], " / ")
			defaults := strings.Split(cells[2], " / ")
			for i, name := range names {
				def := defaults[0]
				if len(defaults) == len(names) {
					def = defaults[i]
				}
				rows[strings.Trim(strings.TrimSpace(name), "`")] = strings.Trim(strings.TrimSpace(def), "`")
			}
		}
	}
	require.NotEmpty(t, rows, "README has an option table")

	zero := Options{StreamName: "orders", AppName: "billing"}
	o, err := zero.withDefaults()
	require.NoError(t, err)
	host, _ := os.Hostname()
	want := map[string]func(doc string) bool{
		"StreamName": func(doc string) bool { _, err := (Options{}).withDefaults(); return doc == "required" && err != nil },
		"StreamARN":  func(doc string) bool { return doc == "required" },
		"Streams":    func(doc string) bool { return doc == "none" && o.Streams == nil },
		"AppName":    func(doc string) bool { return strings.HasPrefix(doc, "empty") && o.AppName == zero.AppName },
		"LeaseTable": func(doc string) bool { return doc == "AppName" && o.LeaseTable == o.AppName },
		"WorkerID": func(doc string) bool {
			return doc == "hostname + random suffix" && strings.HasPrefix(o.WorkerID, host+"-")
		},
		"InitialPosition": func(doc string) bool { return doc == "Latest" && o.InitialPosition == Latest },
		"EnhancedFanOut":  func(doc string) bool { return doc == "off" && !o.EnhancedFanOut },
		"ConsumerName":    func(doc string) bool { return doc == "AppName" && o.ConsumerName == o.AppName },
		"Logger":          func(doc string) bool { return doc == "slog.Default()" && o.Logger == slog.Default() },
	}
	// Every other option: its default printed as Go prints it.
	v := reflect.ValueOf(o)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if _, ok := want[name]; ok {
			continue
		}
		filled, set := v.Field(i), reflect.ValueOf(zero).Field(i)
		if filled.Kind() == reflect.Func || filled.Kind() == reflect.Interface || filled.Kind() == reflect.Pointer {
			continue // clients, AWSConfig, callbacks: described in prose
		}
		if filled.IsZero() && set.IsZero() {
			if doc, ok := rows[name]; ok {
				want[name] = func(string) bool { return strings.HasPrefix(doc, "0") }
			}
			continue
		}
		printed := fmt.Sprint(filled.Interface())
		want[name] = func(doc string) bool { return doc == printed || strings.HasPrefix(doc, printed+" ") }
	}
	for name, ok := range want {
		doc, documented := rows[name]
		if !assert.True(t, documented, "option %s has a default but no row in README's option table", name) {
			continue
		}
		assert.True(t, ok(doc), "README says %s defaults to %q; New fills in %v", name, doc, reflect.ValueOf(o).FieldByName(name))
	}
	for name := range rows {
		_, exists := reflect.TypeOf(o).FieldByName(name)
		assert.True(t, exists, "README's option table names %s, which Options does not have", name)
	}
}
