package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr []string // substrings, one per problem
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "explicit source and format", mod: func(c *Config) { c.Source = "clinic_1"; c.Format = "CSV"; c.Rate = 50; c.LabelColumn = "target" }},
		{name: "bad source", mod: func(c *Config) { c.Source = "a.b" }, wantErr: []string{"ingest.source"}},
		{name: "source starting with dash", mod: func(c *Config) { c.Source = "-a" }, wantErr: []string{"ingest.source"}},
		{name: "reserved source shadow", mod: func(c *Config) { c.Source = "shadow" }, wantErr: []string{"ingest.source"}},
		{name: "bad format", mod: func(c *Config) { c.Format = "xlsx" }, wantErr: []string{"ingest.format"}},
		{name: "several problems", mod: func(c *Config) {
			c.Rate = -1
			c.Repeat = 0
			c.LabelDelay = -time.Second
			c.MaxInFlight = 0
			c.PublishTimeout = time.Millisecond
			c.PublishRetries = -1
			c.RetryBackoff = 0
			c.ProgressInterval = 0
			c.LabelColumn = "a,b"
		}, wantErr: []string{"ingest.rate", "ingest.repeat", "ingest.label_delay", "ingest.max_in_flight", "ingest.publish_timeout",
			"ingest.publish_retries", "ingest.retry_backoff", "ingest.progress_interval", "ingest.label_column"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mod(&cfg)
			err := cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Errorf("%d problems, want %d:\n%v", len(lines), len(tt.wantErr), err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w+":") {
					t.Errorf("no %s in %v", w, err)
				}
			}
		})
	}
}

func TestDetectFormatAndSource(t *testing.T) {
	tests := []struct {
		path       string
		forced     Format
		want       Format
		wantErr    bool
		wantSource string
	}{
		{path: "data/processed.cleveland.data", want: FormatUCI, wantSource: "processed-cleveland"},
		{path: "x/heart.CSV", want: FormatCSV, wantSource: "heart"},
		{path: "feed.ndjson", want: FormatJSONL, wantSource: "feed"},
		{path: "feed.jsonl", want: FormatJSONL, wantSource: "feed"},
		{path: "weird name (copy).txt", forced: "csv", want: FormatCSV, wantSource: "weird-name-copy"},
		{path: "_hidden_.data", want: FormatUCI, wantSource: "hidden"},
		{path: "...data", want: FormatUCI, wantSource: "replay"},
		{path: "shadow.data", want: FormatUCI, wantSource: "shadow-replay"}, // reserved token
		{path: "notes.txt", wantErr: true, wantSource: "notes"},
		{path: "a.data", forced: "xml", wantErr: true, wantSource: "a"},
		{path: strings.Repeat("x", 100) + ".data", want: FormatUCI, wantSource: strings.Repeat("x", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := DetectFormat(tt.path, tt.forced)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("DetectFormat = %q, %v; want %q (err %v)", got, err, tt.want, tt.wantErr)
			}
			if src := SourceFromPath(tt.path); src != tt.wantSource {
				t.Errorf("SourceFromPath = %q, want %q", src, tt.wantSource)
			}
		})
	}
}

func TestRepeatID(t *testing.T) {
	def := Row{Line: 7, ID: DefaultID("src", 7)}
	file := Row{Line: 7, ID: "p7", IDFromFile: true}
	for _, tt := range []struct {
		row  Row
		rep  int
		want string
	}{
		{def, 0, "src-000007"}, {def, 1, "src-r1-000007"}, {def, 12, "src-r12-000007"},
		{file, 0, "p7"}, {file, 2, "p7-r2"},
	} {
		if got := RepeatID(tt.row, "src", tt.rep); got != tt.want {
			t.Errorf("RepeatID(%s, %d) = %s, want %s", tt.row.ID, tt.rep, got, tt.want)
		}
	}
}

func TestReportJSON(t *testing.T) {
	r := Report{Files: 2, Rows: 10, ParseErrors: 1, Records: 9, DuplicateRecords: 3, Outcomes: 9, Duration: 1500 * time.Millisecond}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"files":2,"rows":10,"parse_errors":1,"records":9,"duplicate_records":3,"failed_records":0,"outcomes":9,"duplicate_outcomes":0,"failed_outcomes":0,"outcomes_skipped":0,"outcomes_not_sent":0,"unconfirmed":0,"duration_seconds":1.5}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}
