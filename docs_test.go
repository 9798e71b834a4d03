package kcl

import (
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
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
		"ConsumerARN":     func(doc string) bool { return doc == "none" && o.ConsumerARN == "" },
		"ConsumerARNs":    func(doc string) bool { return doc == "none" && o.ConsumerARNs == nil },
		"Logger":          func(doc string) bool { return doc == "slog.Default()" && o.Logger == slog.Default() },
		"LeaseTableSettings": func(doc string) bool {
			return strings.HasPrefix(doc, "zero: create a missing table") && o.LeaseTableSettings.isZero()
		},
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

// Every Example can be copied: the code pkg.go.dev shows (the function's
// body) uses nothing declared in a test file, a function, variable or type,
// but the stand-ins for the reader's own code, and no internal package (an
// in-process Kinesis such as internal/kinesisfake).
func TestExamplesShowNoTestOnlyHelper(t *testing.T) {
	standIns := map[string]bool{"handle": true, "handlePayment": true, "charge": true}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	require.NoError(t, err)
	pkg := pkgs["kcl_test"]
	require.NotNil(t, pkg, "the examples are in package kcl_test")
	var files []*ast.File
	declared := map[string]bool{}   // top-level names of package kcl_test
	imported := map[string]string{} // local name -> import path
	for _, f := range pkg.Files {
		files = append(files, f)
		for name, obj := range f.Scope.Objects {
			declared[name] = obj != nil
		}
		for _, im := range f.Imports {
			path := strings.Trim(im.Path.Value, `"`)
			name := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			imported[name] = path
		}
	}
	examples := doc.Examples(files...)
	require.Greater(t, len(examples), 5, "the examples are found")
	for _, ex := range examples {
		body := ex.Code
		// Names that are not references: a selector's field or method, a
		// composite literal's field.
		notRefs := map[*ast.Ident]bool{}
		ast.Inspect(body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				notRefs[n.Sel] = true
			case *ast.CompositeLit:
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if id, ok := kv.Key.(*ast.Ident); ok {
							notRefs[id] = true
						}
					}
				}
			}
			return true
		})
		var shown []string
		ast.Inspect(body, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			if !ok || notRefs[id] {
				return true
			}
			local := id.Obj != nil && id.Obj.Pos() >= body.Pos() && id.Obj.Pos() < body.End()
			switch {
			case local:
			case declared[id.Name] && !standIns[id.Name]:
				shown = append(shown, id.Name)
			case strings.Contains(imported[id.Name], "/internal/"):
				shown = append(shown, imported[id.Name])
			}
			return true
		})
		name := "Example" + ex.Name
		if ex.Suffix != "" {
			name += "_" + ex.Suffix
		}
		assert.Empty(t, shown, "%s shows what a reader cannot copy", name)
	}
}
