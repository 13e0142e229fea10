package ingest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// MaxLineBytes bounds one line of a UCI or JSON Lines file; a longer line is
// a parse error (ErrLineTooLong) and is skipped.
const MaxLineBytes = 1 << 20

// Row is one parsed input row.
type Row struct {
	// Line is the 1-based physical line the row starts on.
	Line int
	// ID is the record id: the file's id column/field when present, else
	// "<prefix>-<line, zero-padded to 6 digits>", where prefix is the source
	// (see Replay for files sharing a source).
	ID string
	// IDFromFile says whether ID came from the file.
	IDFromFile bool
	PatientRef string
	// ObservedAt is the file's observed_at; zero when it has none (Replay
	// then uses the publish time).
	ObservedAt time.Time
	Features   schemas.Features
	// Label is the binary outcome (num > 0), nil when the row has none.
	Label *int
}

// DefaultID is the id of a row without one in the file.
func DefaultID(prefix string, line int) string { return fmt.Sprintf("%s-%06d", prefix, line) }

// RepeatID is the id of a row in repetition rep: rep 0 keeps the row's id so
// that a repeated replay re-uses (and dedups against) a plain one; later
// repetitions get "<prefix>-r<rep>-<line>" or, for ids from the file,
// "<id>-r<rep>".
func RepeatID(row Row, prefix string, rep int) string {
	switch {
	case rep == 0:
		return row.ID
	case row.IDFromFile:
		return fmt.Sprintf("%s-r%d", row.ID, rep)
	default:
		return fmt.Sprintf("%s-r%d-%06d", prefix, rep, row.Line)
	}
}

// Reader streams the rows of one file. It is not safe for concurrent use.
type Reader struct {
	name     string
	format   Format
	idPrefix string
	closer   io.Closer

	lines *lineReader // uci, jsonl
	csv   *csvReader  // csv
}

// Open opens path in format (FormatAuto: by extension). Rows without an id
// get DefaultID(cfg.Source or SourceFromPath(path), line).
func Open(path string, format Format, cfg Config) (*Reader, error) {
	prefix := cfg.Source
	if prefix == "" {
		prefix = SourceFromPath(path)
	}
	return openFile(path, format, cfg.readOptions(prefix))
}

func openFile(path string, format Format, opts readOptions) (*Reader, error) {
	f, err := DetectFormat(path, format)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	r, err := newReader(file, path, f, opts)
	if err != nil {
		file.Close()
		return nil, err
	}
	r.closer = file
	return r, nil
}

// NewReader reads rows from rd; name is used in errors (and for format
// detection when format is FormatAuto); rows without an id get
// DefaultID(idPrefix, line).
func NewReader(rd io.Reader, name string, format Format, cfg Config, idPrefix string) (*Reader, error) {
	f, err := DetectFormat(name, format)
	if err != nil {
		return nil, err
	}
	return newReader(rd, name, f, cfg.readOptions(idPrefix))
}

func newReader(rd io.Reader, name string, format Format, opts readOptions) (*Reader, error) {
	r := &Reader{name: name, format: format, idPrefix: opts.idPrefix}
	switch format {
	case FormatUCI, FormatJSONL:
		r.lines = newLineReader(rd)
	case FormatCSV:
		c, err := newCSVReader(rd, opts)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		r.csv = c
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownFormat, format)
	}
	return r, nil
}

// Format is the file's format.
func (r *Reader) Format() Format { return r.format }

// MissingFeatures lists the features a CSV header does not name (they are
// missing in every row); nil for other formats.
func (r *Reader) MissingFeatures() []string {
	if r.csv == nil {
		return nil
	}
	return r.csv.layout.missing
}

// LabelColumn is the CSV column the labels come from, "" when the header
// has none (rows then carry no label). UCI and JSON Lines return "num" and
// "label/num".
func (r *Reader) LabelColumn() string {
	switch r.format {
	case FormatUCI:
		return "num"
	case FormatJSONL:
		return "label/num"
	}
	return r.csv.layout.labelName
}

// Next returns the next row. A row that cannot be parsed is returned as a
// *ParseError (the row is skipped; keep calling Next). At the end it returns
// io.EOF; any other error means the file cannot be read further.
func (r *Reader) Next() (Row, error) {
	for {
		var (
			row  Row
			line int
			err  error
			skip bool
		)
		switch r.format {
		case FormatCSV:
			row, line, skip, err = r.csv.next()
		default:
			var b []byte
			b, line, err = r.lines.next()
			if errors.Is(err, ErrLineTooLong) {
				return Row{}, &ParseError{File: r.name, Line: line, Err: err}
			}
			if err != nil {
				break
			}
			if blank(b) {
				continue
			}
			if r.format == FormatUCI {
				row, err = parseUCILine(string(b))
			} else {
				row, err = parseJSONLine(b)
			}
			if err != nil {
				err = &ParseError{File: r.name, Line: line, Err: err}
			}
		}
		if skip {
			continue
		}
		if err == io.EOF {
			return Row{}, io.EOF
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = r.name
			return Row{}, err
		}
		if err != nil {
			return Row{}, fmt.Errorf("reading %s: %w", r.name, err)
		}
		row.Line = line
		if row.ID == "" {
			row.ID = DefaultID(r.idPrefix, line)
		} else {
			row.IDFromFile = true
		}
		return row, nil
	}
}

// Close closes the file opened by Open.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// ReadFile reads a whole file: the parsed rows, the rows that could not be
// parsed, and an error when the file cannot be read at all. Replay streams
// instead; this is for small files, tools and tests.
func ReadFile(path string, format Format, cfg Config) ([]Row, []ParseError, error) {
	r, err := Open(path, format, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var (
		rows []Row
		errs []ParseError
	)
	for {
		row, err := r.Next()
		if err == io.EOF {
			return rows, errs, nil
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			errs = append(errs, *pe)
			continue
		}
		if err != nil {
			return rows, errs, err
		}
		rows = append(rows, row)
	}
}

func blank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// lineReader returns lines without their terminator and counts them.
type lineReader struct {
	br   *bufio.Reader
	buf  []byte
	line int
}

func newLineReader(rd io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(rd, 64<<10)}
}

// next returns the next line (without "\n" or "\r\n") and its number.
// A line longer than MaxLineBytes is consumed and reported as
// ErrLineTooLong.
func (l *lineReader) next() ([]byte, int, error) {
	l.buf = l.buf[:0]
	tooLong := false
	read := 0
	for {
		chunk, err := l.br.ReadSlice('\n')
		read += len(chunk)
		if !tooLong {
			if len(l.buf)+len(chunk) > MaxLineBytes+2 { // +2: the terminator
				tooLong = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && read == 0 {
			return nil, l.line, io.EOF
		}
		if err != nil && err != io.EOF {
			return nil, l.line, err
		}
		break
	}
	l.line++
	if tooLong {
		return nil, l.line, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, MaxLineBytes)
	}
	b := l.buf
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > MaxLineBytes {
		return nil, l.line, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, MaxLineBytes)
	}
	return b, l.line, nil
}
