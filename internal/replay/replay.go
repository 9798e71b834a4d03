// Package replay is a Kinesis server for benchmarks: it serves ListShards,
// GetShardIterator and GetRecords (the JSON 1.1 protocol) over records made
// up front, with every GetRecords answer encoded before the clock starts, so
// that the server costs almost nothing and a client's own cost shows. Users
// of kcl never import it.
package replay

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Server serves shards of identical-size records.
type Server struct {
	endless  bool
	length   bool // GetRecords answers carry a Content-Length (WithLength)
	URL      string
	pages    map[string][][]byte // shard -> page -> encoded GetRecords answer
	caughtUp map[string][]byte   // shard -> empty answer at the end
	shards   []string
	srv      *http.Server
}

// Start serves shards shards of perShard records of size bytes each, in
// pages of pageSize records (a GetRecords Limit above that is served as
// pageSize). Shards stay open: past the last record, GetRecords answers no
// records and MillisBehindLatest 0 or, when endless, the first page again
// (sequence numbers repeat) and readers are never caught up: for
// steady-state measurements. GetRecords answers are sent chunked, without a
// length, unless WithLength is given.
func Start(shards, perShard, size, pageSize int, endless bool, opts ...Option) (*Server, error) {
	s := &Server{pages: map[string][][]byte{}, caughtUp: map[string][]byte{}, endless: endless}
	for _, o := range opts {
		o(s)
	}
	data := base64.StdEncoding.EncodeToString(make([]byte, size))
	// Arrival times as Kinesis writes them: epoch seconds in E notation,
	// with milliseconds.
	arrival := strconv.FormatFloat(float64(time.Now().UnixMilli())/1e12, 'f', -1, 64) + "E9"
	for sh := range shards {
		id := fmt.Sprintf("shardId-%012d", sh)
		s.shards = append(s.shards, id)
		for start := 0; start < perShard; start += pageSize {
			n := min(pageSize, perShard-start)
			var b strings.Builder
			b.WriteString(`{"Records":[`)
			for i := range n {
				if i > 0 {
					b.WriteByte(',')
				}
				// Sequence numbers of 56 digits, as Kinesis's.
				fmt.Fprintf(&b, `{"Data":%q,"PartitionKey":"pk-%d","SequenceNumber":"4959033827149025660855969253%04d%024d","ApproximateArrivalTimestamp":%s}`,
					data, start+i, sh, start+i, arrival)
			}
			next := fmt.Sprintf("%s/%d", id, len(s.pages[id])+1)
			behind := 1000
			if start+n >= perShard && !endless {
				behind = 0
			}
			fmt.Fprintf(&b, `],"NextShardIterator":%q,"MillisBehindLatest":%d}`, next, behind)
			s.pages[id] = append(s.pages[id], []byte(b.String()))
		}
		s.caughtUp[id] = []byte(fmt.Sprintf(`{"Records":[],"NextShardIterator":"%s/%d","MillisBehindLatest":0}`, id, len(s.pages[id])))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.URL = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(l)
	return s, nil
}

// Option changes how a Server answers.
type Option func(*Server)

// WithLength sends every GetRecords answer with its Content-Length, as
// Kinesis does. Without it, an answer larger than the 2 KiB net/http buffers
// goes chunked, with no length: a reader cannot size its buffer up front.
func WithLength() Option { return func(s *Server) { s.length = true } }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202."); op {
	case "ListShards":
		var b strings.Builder
		b.WriteString(`{"Shards":[`)
		for i, id := range s.shards {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"ShardId":%q,"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"1"},"SequenceNumberRange":{"StartingSequenceNumber":"0"}}`, id)
		}
		b.WriteString(`]}`)
		io.WriteString(w, b.String())
	case "DescribeStreamSummary": // every consumer asks it at start, for the stream's ARN
		var in struct{ StreamName, StreamARN string }
		_ = json.Unmarshal(body, &in)
		name := in.StreamName
		if name == "" {
			_, name, _ = strings.Cut(in.StreamARN, ":stream/")
		}
		fmt.Fprintf(w, `{"StreamDescriptionSummary":{"StreamName":%q,"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/%s","StreamStatus":"ACTIVE","StreamCreationTimestamp":1700000000,"OpenShardCount":%d,"RetentionPeriodHours":24,"EnhancedMonitoring":[]}}`, name, name, len(s.shards))
	case "GetShardIterator":
		var in struct{ ShardId string }
		_ = json.Unmarshal(body, &in)
		fmt.Fprintf(w, `{"ShardIterator":"%s/0"}`, in.ShardId)
	case "GetRecords":
		var in struct{ ShardIterator string }
		_ = json.Unmarshal(body, &in)
		id, at, _ := strings.Cut(in.ShardIterator, "/")
		n, _ := strconv.Atoi(at)
		pages := s.pages[id]
		page := s.caughtUp[id]
		switch {
		case s.endless && len(pages) > 0:
			page = pages[n%len(pages)]
		case n < len(pages):
			page = pages[n]
		}
		if s.length {
			w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		}
		w.Write(page)
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"InvalidArgumentException","message":"replay serves no %s"}`, op)
	}
}
