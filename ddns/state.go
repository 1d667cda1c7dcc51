package ddns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// stateFile is where the last published address of each record is kept, so a restart does
// not rewrite records that are already right.
const stateFile = "ddns.json"

type savedRecord struct {
	Address   netip.Addr `json:"address"`
	Published time.Time  `json:"published"`
}

type savedState struct {
	Records map[string]savedRecord `json:"records"`
}

func loadState(dir string) (savedState, error) {
	st := savedState{Records: map[string]savedRecord{}}
	if dir == "" {
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return savedState{Records: map[string]savedRecord{}}, fmt.Errorf("%s: %w", stateFile, err)
	}
	if st.Records == nil {
		st.Records = map[string]savedRecord{}
	}
	return st, nil
}

func saveState(dir string, st savedState) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), append(b, '\n'), 0o600)
}
