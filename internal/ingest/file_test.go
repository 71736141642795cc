package ingest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// A bulk file is read a chunk at a time, and a chunk ends at its count of
// messages or at its bytes (Message.Size), whichever comes first: a file of
// large entries is never held whole. Every line is read once, in order,
// and a message keeps its values after the reader has moved on.
func TestReadFileChunksAreBounded(t *testing.T) {
	t.Parallel()
	const lines = 200
	note := strings.Repeat("x", 8<<10)
	var jsonl, csv strings.Builder
	csv.WriteString("userId,event,timestamp,messageId,note\n")
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&jsonl, `{"type":"track","userId":"u%d","event":"noted","messageId":"m%d","timestamp":"2026-01-02T03:04:05Z","properties":{"note":"%s"}}`+"\n", i%7, i, note)
		fmt.Fprintf(&csv, "u%d,noted,2026-01-02T03:04:05Z,m%d,%s\n", i%7, i, note)
	}
	want := make([]string, lines)
	for i := range want {
		want[i] = fmt.Sprint("m", i)
	}
	for _, c := range []struct {
		name            string
		file            string
		chunk, bytes    int
		minChunks       int // at least this many chunks
		fullChunkLength int // every chunk but the last has this many messages (0: any)
	}{
		{name: "JSON lines, by bytes", file: jsonl.String(), chunk: 1000, bytes: 100 << 10, minChunks: lines * (8 << 10) / (100 << 10)},
		{name: "CSV, by bytes", file: csv.String(), chunk: 1000, bytes: 100 << 10, minChunks: lines * (8 << 10) / (100 << 10)},
		{name: "JSON lines, by messages", file: jsonl.String(), chunk: 7, bytes: 1 << 30, minChunks: lines / 7, fullChunkLength: 7},
		{name: "CSV, by messages", file: csv.String(), chunk: 7, bytes: 1 << 30, minChunks: lines / 7, fullChunkLength: 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var (
				got    []string
				chunks [][]Message
			)
			err := ReadFileBytes(strings.NewReader(c.file), time.Unix(0, 0), c.chunk, c.bytes, func(ms []Message) error {
				size := 0
				for i := range ms {
					size += ms[i].Size()
					got = append(got, ms[i].MessageID)
				}
				// The chunk ends with the message that took it to its
				// bytes, not later.
				if last := ms[len(ms)-1].Size(); size-last >= c.bytes {
					t.Errorf("chunk %d: %d messages of %d bytes, over %d before its last", len(chunks), len(ms), size, c.bytes)
				}
				if len(ms) > c.chunk {
					t.Errorf("chunk %d: %d messages, over %d", len(chunks), len(ms), c.chunk)
				}
				chunks = append(chunks, ms)
				return nil
			}, func(fe *FieldError) { t.Errorf("line %d rejected: %s: %s", fe.Index, fe.Field, fe.Msg) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("read %d messages %v…, want m0 to m%d in order", len(got), got[:min(len(got), 5)], lines-1)
			}
			if len(chunks) < c.minChunks {
				t.Errorf("%d chunks, want at least %d", len(chunks), c.minChunks)
			}
			for i, ms := range chunks[:len(chunks)-1] {
				if c.fullChunkLength > 0 && len(ms) != c.fullChunkLength {
					t.Errorf("chunk %d has %d messages, want %d", i, len(ms), c.fullChunkLength)
				}
			}
			for _, ms := range chunks {
				for _, m := range ms {
					if p := string(m.Properties); p != `{"note":"`+note+`"}` {
						t.Fatalf("%s's properties, once the file was read: %.40s…", m.MessageID, p)
					}
				}
			}
		})
	}
}

// An identify call counts identifyCost more in a chunk's bytes, for the
// contact storing it creates: a contacts file is read in chunks of fewer
// lines than an events file of the same bytes.
func TestReadFileChunksOfContactsAreSmaller(t *testing.T) {
	t.Parallel()
	var file strings.Builder
	file.WriteString("userId,email,first_name\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&file, "u%d,u%d@example.com,Ann\n", i, i)
	}
	const maxBytes = 64 << 10
	var lengths []int
	err := ReadFileBytes(strings.NewReader(file.String()), time.Unix(0, 0), 1000, maxBytes, func(ms []Message) error {
		size := 0
		for i := range ms {
			size += ms[i].Size() + identifyCost
		}
		if last := ms[len(ms)-1].Size() + identifyCost; size-last >= maxBytes {
			t.Errorf("chunk %d: %d identify calls of %d bytes with their contacts, over %d before the last", len(lengths), len(ms), size, maxBytes)
		}
		lengths = append(lengths, len(ms))
		return nil
	}, func(fe *FieldError) { t.Errorf("line %d rejected: %s: %s", fe.Index, fe.Field, fe.Msg) })
	if err != nil {
		t.Fatal(err)
	}
	if want := maxBytes / identifyCost; lengths[0] > want {
		t.Fatalf("chunks of %v identify calls, want at most %d", lengths, want)
	}
}

// A CSV row's messageId is the hash of the entry built from it, so that
// importing the same file twice adds nothing: the entry's bytes must not
// change from one version to the next. These are the ids the rows got
// before the entries were written without encoding/json's reflection.
func TestCSVMessageIDsStayTheSame(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, file string
		ids        []string
	}{
		{
			name: "events",
			file: "userId,event,timestamp,path,sku,revenue,zip,ok\n" +
				"u1,page_viewed,2026-01-02T03:04:05Z,/a?b=1&c=<2>,,49.90,02134,true\n" +
				"\"\u00fc\",\"order \"\"completed\"\"\",2026-01-02,\"x,\ny\",\u00e9\u2028,-3e2,007,false\n" +
				"u3,plain_event,,\\back\\slash,\x01ctl,1e400x,-0,TRUE\n",
			ids: []string{"csv:66a2faa79f7537ff5f77d94a3f10eaca", "csv:1bf647176fc42384bcca2e5547193ae3", "csv:91aa1163b3929f70530383198009f0e7"},
		},
		{
			name: "contacts",
			file: "userId,email,first_name,Plan <x>\n" +
				"u1,Ann@Example.com,Ann,pro\n" +
				"u2,bo@example.com,\"Bo \"\"B\"\"\",\ttab\n" +
				"u3,,\"\u00fc\u2028\",plain\n",
			ids: []string{"csv:575901e067d6c52c2e29b40fdadd22b0", "csv:00f963dc298a0f0b1a12c954abc662fc", "csv:42578b45b61f875179e038036d9eba7a"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var ids []string
			err := ReadFile(strings.NewReader(c.file), time.Unix(0, 0), 100, func(ms []Message) error {
				for _, m := range ms {
					ids = append(ids, m.MessageID)
				}
				return nil
			}, func(fe *FieldError) { t.Errorf("line %d rejected: %s: %s", fe.Index, fe.Field, fe.Msg) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, c.ids) {
				t.Fatalf("message ids %q, want %q", ids, c.ids)
			}
		})
	}
}
