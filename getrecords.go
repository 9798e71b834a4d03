package kcl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

// leanGetRecords is the per-call option kcl passes to every GetRecords call.
// With the SDK's client it has the body of a successful GetRecords answer
// decoded by decodeGetRecords instead of the SDK's generic JSON
// deserialiser: the same output, in a fraction of the time and allocations.
//
//   - Signing, endpoints, retries, error answers, result metadata and the
//     closing of the body stay the SDK's: only the protocol's
//     DeserializeResponse is wrapped, and it hands every other answer to the
//     SDK's own.
//   - It applies to the SDK's own JSON 1.1 protocol only (any client made by
//     kinesis.New or NewFromConfig); a client set up with another
//     Options.Protocol is left as it is.
//   - A KinesisAPI that is not the SDK's client ignores it, or passes it on
//     to the client it wraps.
func leanGetRecords(o *kinesis.Options) {
	if p, ok := o.Protocol.(*awsjson.Protocol); ok && p.ID() == awsJSON11 {
		o.Protocol = leanProtocol{p}
	}
}

var awsJSON11 = smithy.ShapeID{Namespace: "aws.protocols", Name: "awsJson1_1"}

// leanProtocol is the SDK's JSON 1.1 protocol with its own decoder for a
// successful GetRecords answer. It is immutable and safe for concurrent use,
// as the protocol it wraps is.
type leanProtocol struct{ smithyhttp.ClientProtocol }

// DeserializeResponse decodes a 2xx answer to GetRecords into out, as the
// SDK's awsjson protocol would, and hands any other answer to it.
func (p leanProtocol) DeserializeResponse(ctx context.Context, op *smithy.OperationSchema, reg *smithy.TypeRegistry, resp *smithyhttp.Response, out smithy.Deserializable) error {
	o, ok := out.(*kinesis.GetRecordsOutput)
	if !ok || op.Output != schemas.GetRecordsOutput || resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return p.ClientProtocol.DeserializeResponse(ctx, op, reg, resp, out)
	}
	var buf *bytes.Buffer
	if n := resp.ContentLength; n > maxPooledBody {
		// Too large to keep: read once, then dropped. Room for the largest
		// answer at most, whatever the header says.
		buf = bytes.NewBuffer(make([]byte, 0, int(min(n, maxBody))+bytes.MinRead))
	} else {
		buf = bodies.Get().(*bytes.Buffer)
		// Read in place: ReadFrom wants MinRead spare bytes to see the end.
		// A pooled buffer too small is replaced by one of the size needed,
		// not grown: Grow would at least double it, past what the pool
		// keeps, and pages of varying sizes would never reuse one.
		if need := int(n) + bytes.MinRead; n > 0 && buf.Cap() < need {
			buf = bytes.NewBuffer(make([]byte, 0, need))
		}
		defer func() {
			if buf.Cap() <= maxPooledBody+bytes.MinRead {
				buf.Reset()
				bodies.Put(buf)
			}
		}()
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	if buf.Len() == 0 {
		return nil // as the SDK: an empty body is an empty output
	}
	if err := decodeGetRecords(buf.Bytes(), o); err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	return nil
}

// bodies holds buffers for answer bodies, which decodeGetRecords copies
// everything out of. Only buffers of at most maxPooledBody bytes are kept:
// beyond those in use, the pool may hold about two per P (GOMAXPROCS)
// across a garbage collection, which the documented memory bound counts
// (Options.MaxUnackedPerShard). A larger body is read into a buffer of its
// own, then dropped.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const (
	// maxPooledBody holds a 1 MB page of 100-byte records (2.8 MiB, as
	// Kinesis writes them): a page a shard fills in a second. Reading
	// such pages into buffers of their own slowed a drain by about 30%
	// (bench/throughput_test.go, caps of 1 and 2 MiB against 4 and 32).
	maxPooledBody = 4 << 20
	// maxBody is the largest GetRecords answer: at most 10 MB of data,
	// about 14 MB as base64, with the JSON around it.
	maxBody = 16 << 20
)

// decodeGetRecords decodes body, the JSON of a successful GetRecords answer,
// into out exactly as aws-sdk-go-v2's JSON 1.1 protocol (smithy-go's shape
// deserialiser) does: the same fields, the same nil or empty slices, the same
// strings and times, or an error where the SDK fails. It reads body once and
// keeps no reference to it, so the caller may reuse it.
//
//   - What the SDK reads is checked as it checks it: the JSON up to the
//     closing brace of the top-level object (bytes after it are ignored, as
//     the SDK ignores them), nesting at most 10,000 deep. A string is kept
//     byte for byte unless it holds an escape; then it is unescaped as
//     encoding/json does (bad UTF-8 becomes U+FFFD).
//   - Unknown members are skipped, null members leave a field as it was, a
//     null list item is a zero item, and a repeated member replaces the
//     earlier one.
//   - Times are epoch seconds, as the SDK parses them. One the SDK panics on
//     (the string "NaN") is an error here.
//   - Malformed input gives an error, never a panic.
//
// Records of a page share backing arrays (chunkSize): a few records' Data
// share one, their strings another, their pointed-to values a third. Nothing
// in them is written again once decoded, and each Data has no room past its
// end, so that an append by a user copies.
func decodeGetRecords(body []byte, out *kinesis.GetRecordsOutput) error {
	d := pageDecoder{b: body}
	if err := d.open('{'); err != nil {
		return err
	}
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		if d.null() {
			continue
		}
		switch string(key) {
		case "Records":
			out.Records, err = d.records()
		case "NextShardIterator":
			var s string
			s, err = d.string(false)
			out.NextShardIterator = &s
		case "MillisBehindLatest":
			var n int64
			n, err = d.int64()
			out.MillisBehindLatest = &n
		case "ChildShards":
			out.ChildShards, err = d.childShards()
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

const (
	dataChunk   = 64 << 10 // the largest chunk of record data, but for one record
	stringChunk = 4 << 10  // the largest chunk of strings, as the SDK's string arena
	slotChunk   = 1024     // the most strings or times of one allocation
	maxDepth    = 10000    // as the SDK's parser (and encoding/json)
	maxPage     = 10000    // the most records GetRecords returns
)

// chunkSize is the size of a new chunk of record data or strings, for n
// bytes now: room for about 8 alike, at most limit bytes, and no more than
// the rest of the body (rest bytes) can fill. So a chunk costs an eighth of
// an allocation a record of that size, and a record a user holds keeps at
// most limit bytes (or its own, when larger) from being collected. Smaller
// records that follow fill the room left, so more than 8 may share it.
func chunkSize(n, limit, rest int) int {
	return max(n, min(max(8*n, 512), limit, rest))
}

// pageDecoder reads one GetRecords body. It is used by one goroutine, for
// one body.
type pageDecoder struct {
	b     []byte // the body
	i     int    // where the next byte is read
	depth int    // objects and arrays open at i, as the SDK's parser counts them

	data  []byte      // the current data chunk: bytes before len(data) belong to records
	strs  []byte      // the current string chunk, likewise
	ptrs  []string    // free string slots for *string fields
	times []time.Time // free time slots
	slots int         // the size of the next slot allocation

	scratch []byte // an unescaped string, until the next one
	closers []byte // the closing bracket of each container skip opened
}

var errEnd = errors.New("unexpected end of JSON input")

func (d *pageDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("GetRecords answer at offset %d: "+format, append([]any{d.i}, args...)...)
}

// unexpected is the error for the byte at i, or the end.
func (d *pageDecoder) unexpected(what string) error {
	if d.i >= len(d.b) {
		return errEnd
	}
	return d.errorf("%s, found %q", what, d.b[d.i])
}

// ws skips JSON whitespace.
func (d *pageDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// at skips whitespace and reports whether the next byte is c.
func (d *pageDecoder) at(c byte) bool {
	d.ws()
	return d.i < len(d.b) && d.b[d.i] == c
}

// open reads the bracket c ('{' or '['), which opens a container.
func (d *pageDecoder) open(c byte) error {
	if !d.at(c) {
		return d.unexpected(fmt.Sprintf("expected %q", c))
	}
	d.i++
	if d.depth++; d.depth > maxDepth {
		return d.errorf("nested more than %d deep", maxDepth)
	}
	return nil
}

// null reads a null value if one is next.
func (d *pageDecoder) null() bool {
	if d.at('n') && bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// member reads up to the next member's value in an open object and returns
// the member's name, unescaped; at the closing brace it reads it and
// returns false. first tells that no member was read yet.
func (d *pageDecoder) member(first bool) ([]byte, bool, error) {
	if d.at('}') {
		d.i++
		d.depth--
		return nil, false, nil
	}
	if !first {
		if !d.at(',') {
			return nil, false, d.unexpected("expected ',' or '}'")
		}
		d.i++
	}
	key, err := d.key()
	return key, err == nil, err
}

// key reads a member's name and its colon.
func (d *pageDecoder) key() ([]byte, error) {
	if !d.at('"') {
		return nil, d.unexpected("expected a member name")
	}
	raw, escaped, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if escaped {
		d.scratch = unescape(d.scratch[:0], raw)
		raw = d.scratch
	}
	if !d.at(':') {
		return nil, d.unexpected("expected ':'")
	}
	d.i++
	return raw, nil
}

// item reads up to the next item of an open array, and reports false at
// its closing bracket (which it reads). first tells that no item was read.
func (d *pageDecoder) item(first bool) (bool, error) {
	if d.at(']') {
		d.i++
		d.depth--
		return false, nil
	}
	if !first {
		if !d.at(',') {
			return false, d.unexpected("expected ',' or ']'")
		}
		d.i++ // an item must follow: a ']' fails as one
	}
	return true, nil
}

// records reads the Records list.
func (d *pageDecoder) records() ([]types.Record, error) {
	if err := d.open('['); err != nil {
		return nil, err
	}
	recs := make([]types.Record, 0) // empty, not nil, as the SDK's
	start := d.i
	for first := true; ; first = false {
		more, err := d.item(first)
		if err != nil || !more {
			return recs, err
		}
		recs = append(recs, types.Record{})
		if d.null() {
			continue
		}
		if err := d.record(&recs[len(recs)-1]); err != nil {
			return nil, err
		}
		if first { // room for as many more as fit in the rest if alike, up to a full page
			per := max(d.i-start, 1)
			recs = slices.Grow(recs, min((len(d.b)-d.i)/per+1, maxPage))
		}
	}
}

// record reads one record's object into r.
func (d *pageDecoder) record(r *types.Record) error {
	if err := d.open('{'); err != nil {
		return err
	}
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		if d.null() {
			continue
		}
		switch string(key) {
		case "Data":
			r.Data, err = d.blob()
		case "SequenceNumber":
			r.SequenceNumber, err = d.stringSlot()
		case "PartitionKey":
			r.PartitionKey, err = d.stringSlot()
		case "ApproximateArrivalTimestamp":
			var t time.Time
			if t, err = d.time(); err == nil {
				r.ApproximateArrivalTimestamp = d.timeSlot(t)
			}
		case "EncryptionType":
			var s string
			s, err = d.string(true)
			r.EncryptionType = types.EncryptionType(s)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// childShards reads the ChildShards list.
func (d *pageDecoder) childShards() ([]types.ChildShard, error) {
	if err := d.open('['); err != nil {
		return nil, err
	}
	children := make([]types.ChildShard, 0)
	for first := true; ; first = false {
		more, err := d.item(first)
		if err != nil || !more {
			return children, err
		}
		children = append(children, types.ChildShard{})
		if d.null() {
			continue
		}
		if err := d.childShard(&children[len(children)-1]); err != nil {
			return nil, err
		}
	}
}

func (d *pageDecoder) childShard(c *types.ChildShard) error {
	if err := d.open('{'); err != nil {
		return err
	}
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		if d.null() {
			continue
		}
		switch string(key) {
		case "ShardId":
			var s string
			s, err = d.string(false)
			c.ShardId = &s
		case "ParentShards":
			c.ParentShards, err = d.stringList()
		case "HashKeyRange":
			c.HashKeyRange = &types.HashKeyRange{} // a repeated member starts afresh, as the SDK's
			err = d.hashKeyRange(c.HashKeyRange)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

func (d *pageDecoder) hashKeyRange(h *types.HashKeyRange) error {
	if err := d.open('{'); err != nil {
		return err
	}
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		if d.null() {
			continue
		}
		var s string
		switch string(key) {
		case "StartingHashKey":
			s, err = d.string(false)
			h.StartingHashKey = &s
		case "EndingHashKey":
			s, err = d.string(false)
			h.EndingHashKey = &s
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// stringList reads a list of strings, a null item being "".
func (d *pageDecoder) stringList() ([]string, error) {
	if err := d.open('['); err != nil {
		return nil, err
	}
	list := make([]string, 0)
	for first := true; ; first = false {
		more, err := d.item(first)
		if err != nil || !more {
			return list, err
		}
		var s string
		if !d.null() {
			if s, err = d.string(false); err != nil {
				return nil, err
			}
		}
		list = append(list, s)
	}
}

// string reads a string value. In the page's string chunk when shared (for
// a record's fields), else in a string of its own.
func (d *pageDecoder) string(shared bool) (string, error) {
	if !d.at('"') {
		return "", d.unexpected("expected a string")
	}
	raw, escaped, err := d.scanString()
	if err != nil {
		return "", err
	}
	if escaped {
		d.scratch = unescape(d.scratch[:0], raw)
		raw = d.scratch
	}
	switch {
	case !shared:
		return string(raw), nil
	case len(raw) == 0:
		return "", nil
	case string(raw) == string(types.EncryptionTypeKms):
		return string(types.EncryptionTypeKms), nil
	case string(raw) == string(types.EncryptionTypeNone):
		return string(types.EncryptionTypeNone), nil
	}
	if len(raw) > cap(d.strs)-len(d.strs) {
		d.strs = make([]byte, 0, chunkSize(len(raw), stringChunk, len(d.b)-d.i))
	}
	d.strs = append(d.strs, raw...)
	s := d.strs[len(d.strs)-len(raw):]
	// The chunk's bytes up to len(d.strs) are never written again.
	return unsafe.String(&s[0], len(s)), nil
}

// stringSlot reads a string value into a slot of the page's.
func (d *pageDecoder) stringSlot() (*string, error) {
	s, err := d.string(true)
	if err != nil {
		return nil, err
	}
	if len(d.ptrs) == 0 {
		d.ptrs = make([]string, d.nextSlots())
	}
	p := &d.ptrs[0]
	*p, d.ptrs = s, d.ptrs[1:]
	return p, nil
}

func (d *pageDecoder) timeSlot(t time.Time) *time.Time {
	if len(d.times) == 0 {
		d.times = make([]time.Time, d.nextSlots())
	}
	p := &d.times[0]
	*p, d.times = t, d.times[1:]
	return p
}

// nextSlots is the size of the next slot allocation: growing, so that a
// small page allocates little and a large one few times.
func (d *pageDecoder) nextSlots() int {
	d.slots = min(max(2*d.slots, 16), slotChunk)
	return d.slots
}

// blob reads a base64 string into the page's data chunk, as the SDK's
// base64.StdEncoding.DecodeString of the unescaped string does (it skips
// '\r' and '\n', which JSON allows only escaped).
func (d *pageDecoder) blob() ([]byte, error) {
	if !d.at('"') {
		return nil, d.unexpected("expected a string")
	}
	// The fast way: the string ends at the next quote and holds base64 and
	// nothing else (a backslash, a control or non-ASCII byte fails the
	// decoding). Only raw '\r' and '\n', which JSON forbids and base64
	// skips, could decode: then src has a length that is not a multiple of
	// 4, or decodes to 3 or more bytes short of 3/4 of it (at most 2 short
	// for the padding otherwise). The slow way sorts out every other case.
	if end := bytes.IndexByte(d.b[d.i+1:], '"'); end >= 0 {
		src := d.b[d.i+1 : d.i+1+end]
		n, err := base64.StdEncoding.Decode(d.room(base64.StdEncoding.DecodedLen(len(src))), src)
		if err == nil && len(src)%4 == 0 && len(src)/4*3-n <= 2 {
			d.i += end + 2
			return d.take(n), nil
		}
	}
	raw, escaped, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if escaped {
		d.scratch = unescape(d.scratch[:0], raw)
		raw = d.scratch
	}
	n, err := base64.StdEncoding.Decode(d.room(base64.StdEncoding.DecodedLen(len(raw))), raw)
	if err != nil {
		return nil, fmt.Errorf("decode base64 blob: %w", err)
	}
	return d.take(n), nil
}

// noData is the Data of a record whose data is "": empty, not nil, as the
// SDK's. Its capacity is 0, so an append copies.
var noData = []byte{}

// room returns n bytes of the data chunk, past the ones taken.
func (d *pageDecoder) room(n int) []byte {
	if n > cap(d.data)-len(d.data) {
		d.data = make([]byte, 0, chunkSize(n, dataChunk, base64.StdEncoding.DecodedLen(len(d.b)-d.i)))
	}
	return d.data[len(d.data) : len(d.data)+n]
}

// take takes the next n bytes of the data chunk, with no room past them.
func (d *pageDecoder) take(n int) []byte {
	if n == 0 {
		return noData
	}
	k := len(d.data)
	d.data = d.data[:k+n]
	return d.data[k : k+n : k+n]
}

// int64 reads an integer as the SDK does: a JSON number with no fraction
// and no exponent, in int64's range.
func (d *pageDecoder) int64() (int64, error) {
	d.ws()
	tok, err := d.value()
	if err != nil {
		return 0, err
	}
	n, ok := parseInt(tok)
	if !ok {
		return 0, d.errorf("expected an integer, found %q", tok)
	}
	return n, nil
}

// time reads a time in epoch seconds, as the SDK does: a JSON number, or the
// string "Infinity" or "-Infinity" in any case. The SDK panics on "NaN".
func (d *pageDecoder) time() (time.Time, error) {
	d.ws()
	var f float64
	if d.at('"') {
		raw, escaped, err := d.scanString()
		if err != nil {
			return time.Time{}, err
		}
		if escaped {
			d.scratch = unescape(d.scratch[:0], raw)
			raw = d.scratch
		}
		switch s := string(raw); {
		case strings.EqualFold(s, "Infinity"):
			f = math.Inf(1)
		case strings.EqualFold(s, "-Infinity"):
			f = math.Inf(-1)
		default:
			return time.Time{}, d.errorf("unexpected string value for a time: %q", s)
		}
	} else {
		tok, err := d.value()
		if err != nil {
			return time.Time{}, err
		}
		if n, ok := parseInt(tok); ok {
			f = float64(n)
		} else if f, err = strconv.ParseFloat(string(tok), 64); err != nil {
			return time.Time{}, err
		}
	}
	return epochSeconds(f), nil
}

// epochSeconds is smithy-go's ParseEpochSeconds, without its big.Float: the
// product f×1000 rounded to float64's 53 bits (which the big.Float of 53
// bits also rounds to, and which only overflows where Int64 saturates
// anyway), then truncated to whole milliseconds, saturated at int64's range.
// The nanoseconds wrap around as the SDK's do.
func epochSeconds(f float64) time.Time {
	ms := f * 1e3
	var i int64
	switch {
	case ms >= math.MaxInt64: // 2^63, as a float64
		i = math.MaxInt64
	case ms <= math.MinInt64:
		i = math.MinInt64
	default:
		i = int64(ms)
	}
	return time.Unix(0, i*1e6).UTC()
}

// parseInt parses a decimal integer exactly as the SDK's JSON deserialiser
// does, quirks included: a negative number is taken as -2^63 as soon as its
// digits reach that value, whatever digits follow (the differential fuzz
// target found "-92233720368547758080" read as -2^63 by the SDK).
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' || n > math.MaxUint64/10 {
			return 0, false
		}
		nn := n*10 + uint64(c-'0')
		if nn < n {
			return 0, false
		}
		n = nn
		if n > math.MaxInt64 {
			if neg && n == math.MaxInt64+1 {
				return math.MinInt64, true
			}
			return 0, false
		}
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// value reads one scalar token: a number or a literal, checked as JSON. A
// string, object or array is an error (the SDK's wants a number where this
// is used, and a literal fails to parse as one).
func (d *pageDecoder) value() ([]byte, error) {
	start := d.i
	if d.i >= len(d.b) {
		return nil, errEnd
	}
	switch d.b[d.i] {
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case '"', '{', '[':
		return nil, d.unexpected("expected a number")
	}
	if err := d.number(); err != nil {
		return nil, err
	}
	return d.b[start:d.i], nil
}

func (d *pageDecoder) literal(lit string) ([]byte, error) {
	if !bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
		return nil, d.errorf("invalid literal")
	}
	d.i += len(lit)
	return d.b[d.i-len(lit) : d.i], nil
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *pageDecoder) number() error {
	b, i := d.b, d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	n := digits()
	switch {
	case n == 0:
		return d.errorf("invalid character %q looking for a value", b[min(i, len(b)-1)])
	case n > 1 && b[i-n] == '0':
		return d.errorf("leading zero in a number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return d.errorf("no digits after a decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return d.errorf("no digits in an exponent")
		}
	}
	d.i = i
	return nil
}

// scanString reads the string whose opening quote is at i, checked as the
// SDK's parser checks it (no raw control characters, only JSON's escapes;
// UTF-8 is not checked), and returns its bytes between the quotes, raw, and
// whether it holds an escape.
func (d *pageDecoder) scanString() ([]byte, bool, error) {
	b := d.b
	start := d.i + 1
	escaped := false
	j := start
	for ; j+8 <= len(b); j += 8 { // 8 plain bytes at a time, to the first that is not
		v := binary.LittleEndian.Uint64(b[j:])
		if below(v, 0x20)|equal(v, '"')|equal(v, '\\') != 0 {
			break
		}
	}
	for ; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			d.i = j + 1
			return b[start:j], escaped, nil
		case c == '\\':
			escaped = true
			j++
			if j >= len(b) {
				return nil, false, errEnd
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+5 > len(b) {
					return nil, false, errEnd
				}
				for _, h := range b[j+1 : j+5] {
					if hexDigit(h) < 0 {
						d.i = j
						return nil, false, d.errorf("invalid \\u escape")
					}
				}
				j += 4
			default:
				d.i = j
				return nil, false, d.errorf("invalid escape %q", b[j])
			}
		case c < 0x20:
			d.i = j
			return nil, false, d.errorf("control character in a string")
		}
	}
	return nil, false, errEnd
}

// Bytes of a word: below sets the high bit of each byte of v below c (for
// c up to 0x80), equal of each equal to c, with no false positive when v
// has none (a false positive is possible above a true one: only the
// first is used).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func below(v uint64, c byte) uint64 { return (v - ones*uint64(c)) &^ v & highs }

func equal(v uint64, c byte) uint64 { return below(v^(ones*uint64(c)), 1) }

func hexDigit(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// u4 returns the code unit of the \uXXXX escape at the start of s, or -1.
func u4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		h := hexDigit(c)
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

// unescape appends s, a string's bytes that scanString checked, unescaped as
// encoding/json unescapes them (the SDK's copy of it): a surrogate pair is
// one rune, a lone surrogate and each byte of bad UTF-8 become U+FFFD.
func unescape(dst, s []byte) []byte {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch s[r+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := u4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, u4(s[r:])); dec != utf8.RuneError {
						r += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			dst = utf8.AppendRune(dst, rr)
			r += size
		}
	}
	return dst
}

// skip reads one value of any kind, checked as the SDK's parser checks it,
// nesting included.
func (d *pageDecoder) skip() error {
	base := len(d.closers)
	for {
		// A value starts here.
		d.ws()
		if d.i >= len(d.b) {
			return errEnd
		}
		switch c := d.b[d.i]; c {
		case '{', '[':
			if err := d.open(c); err != nil {
				return err
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			if d.at(closer) {
				d.i++
				d.depth--
				break // an empty one: a whole value
			}
			d.closers = append(d.closers, closer)
			if c == '{' {
				if _, err := d.key(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if _, _, err := d.scanString(); err != nil {
				return err
			}
		default:
			if _, err := d.value(); err != nil {
				return err
			}
		}
		// A value ended: close the containers it completes.
		for {
			if len(d.closers) == base {
				return nil
			}
			closer := d.closers[len(d.closers)-1]
			if d.at(closer) {
				d.i++
				d.depth--
				d.closers = d.closers[:len(d.closers)-1]
				continue
			}
			if !d.at(',') {
				return d.unexpected("expected ',' or a closing bracket")
			}
			d.i++
			if closer == '}' {
				if _, err := d.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}
