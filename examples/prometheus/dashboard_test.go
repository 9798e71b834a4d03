package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
)

// exportedNames gathers the metric names the example serves, from the
// registry main builds, fed a worker holding one shard so that every
// per-shard family has a sample.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for name := range exportedLabels(t) {
		names[name] = true
	}
	require.NotEmpty(t, names)
	return names
}

// exportedLabels returns the label names of each metric the example
// serves, as exportedNames gathers them.
func exportedLabels(t *testing.T) map[string][]string {
	t.Helper()
	reg, err := newRegistry(fixedStats{WorkerID: "w1", LeasesHeld: 1, Shards: []kcl.ShardStats{{ShardID: "shardId-000000000000", StreamARN: "arn:aws:kinesis:us-east-1:123456789012:stream/orders", Owner: "w1", Held: true}}})
	require.NoError(t, err)
	families, err := reg.Gather()
	require.NoError(t, err)
	labels := map[string][]string{}
	for _, f := range families {
		labels[f.GetName()] = nil
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels[f.GetName()], lp.GetName()) {
					labels[f.GetName()] = append(labels[f.GetName()], lp.GetName())
				}
			}
		}
	}
	return labels
}

// TestDashboardPerShardPanelsKeepEveryLabel: a per-shard query (of a
// metric with a shard label, keeping shard) must keep every label the
// metric carries in its by clauses, and name each in its legend, or series
// of different shards merge into one: shard IDs repeat across the streams
// of Options.Streams, so stream is one of them. Queries summed per worker
// are not per-shard.
func TestDashboardPerShardPanelsKeepEveryLabel(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	labels := exportedLabels(t)
	require.Contains(t, labels["kcl_millis_behind_latest"], "stream", "the fixture has a per-shard sample with its stream")
	problems, err := perShardGrouping(raw, labels)
	require.NoError(t, err)
	assert.Empty(t, problems)

	// The check can fail: the grouping (or legend) of before, without stream.
	bad := strings.ReplaceAll(string(raw), "by (stream, shard, worker)", "by (shard, worker)")
	require.NotEqual(t, string(raw), bad)
	problems, err = perShardGrouping([]byte(bad), labels)
	require.NoError(t, err)
	assert.NotEmpty(t, problems)
	bad = strings.ReplaceAll(string(raw), "{{stream}} ", "")
	require.NotEqual(t, string(raw), bad)
	problems, err = perShardGrouping([]byte(bad), labels)
	require.NoError(t, err)
	assert.NotEmpty(t, problems)
}

var byClause = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)

func clauseLabels(list string) []string {
	var out []string
	for _, l := range strings.Split(list, ",") {
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

// perShardGrouping returns what is wrong with the per-shard targets of a
// dashboard: those that query a per-shard metric (labels gives each
// metric's labels) and keep its shard label (a by clause with shard, or no
// by clause). Each must keep every label of the metric: a by clause
// without one, a without clause dropping one, or a legend not naming one,
// is a problem.
func perShardGrouping(raw []byte, labels map[string][]string) ([]string, error) {
	var doc struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr   string `json:"expr"`
				Legend string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var problems []string
	for _, p := range doc.Panels {
		for _, tg := range p.Targets {
			names, err := metricNames(tg.Expr)
			if err != nil {
				return nil, fmt.Errorf("panel %q: %w", p.Title, err)
			}
			var want []string
			for _, n := range names {
				if slices.Contains(labels[n], "shard") {
					for _, l := range labels[n] {
						if !slices.Contains(want, l) {
							want = append(want, l)
						}
					}
				}
			}
			clauses := byClause.FindAllStringSubmatch(tg.Expr, -1)
			perShard := len(want) > 0 // a per-shard panel: shard kept
			for _, m := range clauses {
				if m[1] == "by" && !slices.Contains(clauseLabels(m[2]), "shard") {
					perShard = false // summed over shards, per worker: a worker panel
				}
			}
			if !perShard {
				continue
			}
			for _, m := range clauses {
				got := clauseLabels(m[2])
				for _, l := range want {
					if (m[1] == "by") != slices.Contains(got, l) {
						problems = append(problems, fmt.Sprintf("panel %q: %s (%s) loses label %s of a per-shard metric: %s", p.Title, m[1], m[2], l, tg.Expr))
					}
				}
			}
			for _, l := range want {
				if !strings.Contains(tg.Legend, "{{"+l+"}}") {
					problems = append(problems, fmt.Sprintf("panel %q: legend %q does not name %s", p.Title, tg.Legend, l))
				}
			}
		}
	}
	return problems, nil
}

// TestDashboardQueriesExportedMetrics reads grafana-dashboard.json: every
// metric its queries name must be one the example exports, and every metric
// it exports is on the dashboard.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	exported := exportedNames(t)
	queried, err := dashboardMetrics(raw)
	require.NoError(t, err)
	for name, where := range queried {
		assert.True(t, exported[name], "the dashboard queries %s (%s), which the example does not export", name, strings.Join(where, "; "))
	}
	for name := range exported {
		assert.Contains(t, queried, name, "the example exports %s, which no panel of the dashboard shows", name)
	}
}

// TestDashboardCheckFails makes sure the check above can fail: a dashboard
// querying a name the example does not export, in a panel or in a variable.
func TestDashboardCheckFails(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	exported := exportedNames(t)
	for _, name := range []string{"kcl_records_acked_total", "kcl_leases_held"} {
		require.Contains(t, string(raw), name)
		bad := strings.ReplaceAll(string(raw), name, "kcl_no_such_metric")
		queried, err := dashboardMetrics([]byte(bad))
		require.NoError(t, err)
		assert.Contains(t, queried, "kcl_no_such_metric")
		assert.False(t, exported["kcl_no_such_metric"])
	}
	_, err = dashboardMetrics([]byte(`{"panels": [{"targets": [{"expr": "{__name__=\"kcl_leases_held\"}"}]}]}`))
	assert.Error(t, err, "a name in a matcher is not recognised: it must be refused, not skipped")
	_, err = dashboardMetrics([]byte(`{"panels": [{"targets": [{"refId": "A"}]}]}`))
	assert.Error(t, err, "a target without a PromQL expression must be refused")
}

// dashboardMetrics returns the metric names that a Grafana dashboard's
// PromQL queries, with where each is queried: the expr of every target
// (anywhere in the JSON, rows and annotations included) and the queries of
// its template variables.
func dashboardMetrics(raw []byte) (map[string][]string, error) {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	names := map[string][]string{}
	add := func(where, expr string) error {
		found, err := metricNames(expr)
		if err != nil {
			return fmt.Errorf("%s: %q: %w", where, expr, err)
		}
		for _, n := range found {
			names[n] = append(names[n], where)
		}
		return nil
	}
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		switch v := v.(type) {
		case map[string]any:
			if targets, ok := v["targets"].([]any); ok {
				for i, tg := range targets {
					if expr, _ := tg.(map[string]any)["expr"].(string); expr == "" {
						return fmt.Errorf("%s.targets[%d]: no PromQL expr", path, i)
					}
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if expr, ok := v[k].(string); ok && k == "expr" {
					if err := add(path, expr); err != nil {
						return err
					}
				} else if err := walk(path+"."+k, v[k]); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range v {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("dashboard", doc); err != nil {
		return nil, err
	}
	vars, _ := doc.(map[string]any)["templating"].(map[string]any)["list"].([]any)
	for i, v := range vars {
		v, _ := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		expr, err := variableExpr(fmt.Sprint(q))
		if err != nil {
			return nil, fmt.Errorf("templating.list[%d] (%v): %w", i, v["name"], err)
		}
		if err := add(fmt.Sprintf("variable %v", v["name"]), expr); err != nil {
			return nil, err
		}
	}
	return names, nil
}

var (
	labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
	queryResult = regexp.MustCompile(`^\s*query_result\(\s*(.+)\)\s*$`)
)

// variableExpr is the PromQL of a Grafana Prometheus variable query.
func variableExpr(q string) (string, error) {
	for _, re := range []*regexp.Regexp{labelValues, queryResult} {
		if m := re.FindStringSubmatch(q); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("variable query %q: only label_values(query, label) and query_result(query) are understood", q)
}

// PromQL words that are not metric names when not followed by "(".
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true,
}

// Aggregation operators, which a by or without clause may follow.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// Modifiers followed by a list of label names, not an expression.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression selects. It
// errs on the side of failing: any identifier it cannot place is taken
// for a metric name (and so must be exported), and a selector by
// __name__ is refused rather than skipped.
func metricNames(expr string) ([]string, error) {
	l := lexer{s: expr}
	var names []string
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == '"' || c == '\'' || c == '`': // a string is never a metric name
			if err := l.skipString(); err != nil {
				return nil, err
			}
		case c == '{':
			body, err := l.skipBlock('{', '}')
			if err != nil {
				return nil, err
			}
			if strings.Contains(body, "__name__") {
				return nil, fmt.Errorf("a selector by __name__ is not supported: name the metric")
			}
		case c == '[': // a range or subquery: durations and Grafana variables
			if _, err := l.skipBlock('[', ']'); err != nil {
				return nil, err
			}
		case isDigit(c) || c == '.' && l.i+1 < len(l.s) && isDigit(l.s[l.i+1]): // 1e3, 0x1f, 5m, 1h30m
			for l.i < len(l.s) && (isIdent(l.s[l.i]) || l.s[l.i] == '.') {
				l.i++
			}
		case c == '$': // a Grafana variable: $name, ${name}, $__interval
			l.i++
			if l.i < len(l.s) && l.s[l.i] == '{' {
				if _, err := l.skipBlock('{', '}'); err != nil {
					return nil, err
				}
			}
			l.word()
		case isIdentStart(c):
			word := l.word()
			next := l.i
			for next < len(l.s) && strings.IndexByte(" \t\r\n", l.s[next]) >= 0 {
				next++
			}
			followedByParen := next < len(l.s) && l.s[next] == '('
			after := lexer{s: l.s, i: next}
			modifier := strings.ToLower(after.word())
			switch {
			case aggregations[strings.ToLower(word)] && (modifier == "by" || modifier == "without"): // sum by (a) (x)
			case labelLists[strings.ToLower(word)] && followedByParen:
				l.i = next
				if _, err := l.skipBlock('(', ')'); err != nil {
					return nil, err
				}
			case followedByParen: // a function or aggregation: its arguments are read on
			case promqlKeywords[strings.ToLower(word)]:
			default:
				names = append(names, word)
			}
		default: // operators, parentheses, commas, spaces, @
			l.i++
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no metric name found")
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// lexer walks a PromQL expression; i is the next byte.
type lexer struct {
	s string
	i int
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }

// word reads an identifier.
func (l *lexer) word() string {
	start := l.i
	for l.i < len(l.s) && isIdent(l.s[l.i]) {
		l.i++
	}
	return l.s[start:l.i]
}

// skipString reads the quoted string at i: "..." and '...' with backslash
// escapes, `...` raw.
func (l *lexer) skipString() error {
	quote, start := l.s[l.i], l.i
	for l.i++; l.i < len(l.s); l.i++ {
		switch l.s[l.i] {
		case '\\':
			if quote != '`' {
				l.i++
			}
		case quote:
			l.i++
			return nil
		}
	}
	return fmt.Errorf("unterminated string at %d", start)
}

// skipBlock reads the block opened at i, strings inside included, and
// returns its content. Blocks of the same kind do not nest in PromQL's
// selectors, ranges and label lists.
func (l *lexer) skipBlock(open, closing byte) (string, error) {
	start := l.i
	for l.i++; l.i < len(l.s); {
		switch c := l.s[l.i]; c {
		case '"', '\'', '`':
			if err := l.skipString(); err != nil {
				return "", err
			}
		case open:
			return "", fmt.Errorf("nested %q at %d", open, l.i)
		case closing:
			l.i++
			return l.s[start+1 : l.i-1], nil
		default:
			l.i++
		}
	}
	return "", fmt.Errorf("unclosed %q at %d", open, start)
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`kcl_leases_held`: {"kcl_leases_held"},
		`sum by (worker) (rate(kcl_records_delivered_total{worker=~"$worker", shard!="a}b\"c"}[$__rate_interval]))`: {"kcl_records_delivered_total"},
		`sum(rate(a_total[5m])) without (shard) / on (worker) group_left (shard) b`:                                 {"a_total", "b"},
		`histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m] offset 1h)))`:                                       {"x_bucket"},
		`max_over_time(deriv(x[10m])[1h:5m]) > bool 1e3 and y unless z or -w`:                                       {"w", "x", "y", "z"},
		`x @ start() * ${factor} + inf`:                              {"x"},
		`sum(kcl_leases_held{worker=~"$worker"}) by(worker)`:         {"kcl_leases_held"},
		`label_replace(up, "a", "$1", "b", "(.*)")`:                  {"up"},
		`count_values("v\"w", x) + label_join(y, "a", "\\", 'b\'c')`: {"x", "y"},
		`{__name__=~"kcl_.*"}`:                                       nil,
		`sum(rate([5m]))`:                                            nil,
	} {
		got, err := metricNames(expr)
		if want == nil {
			assert.Error(t, err, expr)
			continue
		}
		if assert.NoError(t, err, expr) {
			assert.Equal(t, want, got, expr)
		}
	}
}
