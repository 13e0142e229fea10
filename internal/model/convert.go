package model

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dmitryikh/leaves"
)

// The structs below mirror the XGBoost 0.x binary layout that
// leaves/internal/xgbin reads (little endian, no padding between fields).

type binLearnerParam struct {
	BaseScore          float32
	NumFeatures        uint32
	NumClass           int32
	ContainExtraAttrs  int32
	ContainEvalMetrics int32
	Reserved           [29]int32
}

type binGBTreeParam struct {
	NumTrees             int32
	NumRoots             int32
	NumFeature           int32
	Pad32bit             int32
	NumPbufferDeprecated int64
	NumOutputGroup       int32
	SizeLeafVector       int32
	Reserved             [32]int32
}

type binTreeParam struct {
	NumRoots       int32
	NumNodes       int32
	NumDeleted     int32
	MaxDepth       int32
	NumFeature     int32
	SizeLeafVector int32
	Reserved       [31]int32
}

type binNode struct {
	Parent int32
	CLeft  int32
	CRight int32
	SIndex uint32
	Info   float32
}

type binNodeStat struct {
	LossChg      float32
	SumHess      float32
	BaseWeight   float32
	LeafChildCnt int32
}

// toLegacyBinary writes a checked model in the XGBoost 0.x layout, applying
// the four conversions parity depends on (see doc.go).
func toLegacyBinary(m *checkedModel) []byte {
	var buf bytes.Buffer
	w := func(v any) { _ = binary.Write(&buf, binary.LittleEndian, v) } // bytes.Buffer writes cannot fail
	str := func(s string) { w(uint64(len(s))); buf.WriteString(s) }

	w(binLearnerParam{BaseScore: m.baseMargin, NumFeatures: uint32(m.numFeature)})
	str(objectiveLogistic)
	str(boosterGBTree)
	w(binGBTreeParam{NumTrees: int32(len(m.trees)), NumRoots: 1, NumFeature: int32(m.numFeature), NumOutputGroup: 1})
	for i := range m.trees {
		t := &m.trees[i]
		n := len(t.LeftChildren)
		w(binTreeParam{NumRoots: 1, NumNodes: int32(n), NumFeature: int32(m.numFeature)})
		nodes := make([]binNode, n)
		for j := range nodes {
			nd := &nodes[j]
			nd.Parent = -1
			nd.CLeft, nd.CRight = t.LeftChildren[j], t.RightChildren[j]
			v := float32(t.SplitConditions[j])
			if nd.CLeft == -1 {
				nd.Info = v // leaf value
				continue
			}
			nd.SIndex = uint32(t.SplitIndices[j])
			if t.DefaultLeft[j] != 0 {
				nd.SIndex |= 1 << 31
			}
			// XGBoost goes left when x < t, leaves when x <= t.
			nd.Info = math.Nextafter32(v, float32(math.Inf(-1)))
		}
		w(nodes)
		w(make([]binNodeStat, n))
	}
	w(make([]int32, len(m.trees))) // tree_info: all group 0
	return buf.Bytes()
}

// loadLeaves hands bytes produced by toLegacyBinary to leaves. The recover is
// a second line of defence only: the bytes were built from a checked model.
func loadLeaves(bin []byte) (ens *leaves.Ensemble, err error) {
	defer func() {
		if r := recover(); r != nil {
			ens, err = nil, fmt.Errorf("%w: leaves panicked on the converted model: %v", ErrFormat, r)
		}
	}()
	ens, err = leaves.XGEnsembleFromReader(bufio.NewReader(bytes.NewReader(bin)), true)
	if err != nil {
		return nil, fmt.Errorf("%w: leaves rejected the converted model: %v", ErrFormat, err)
	}
	return ens, nil
}

// ParseXGBoostJSON checks an XGBoost JSON model (gbtree, binary:logistic,
// feature names equal to wantFeatures in order, no categorical splits,
// well-formed trees) and returns it as a leaves ensemble that outputs
// probabilities. Inputs to the ensemble must be rounded to float32 first
// (Model.Predict does this). It never panics; every error wraps a sentinel.
func ParseXGBoostJSON(data []byte, wantFeatures []string) (*leaves.Ensemble, error) {
	cm, err := decodeXGBoostJSON(data, wantFeatures)
	if err != nil {
		return nil, err
	}
	ens, err := loadLeaves(toLegacyBinary(cm))
	if err != nil {
		return nil, err
	}
	if err := checkEnsemble(ens, cm); err != nil {
		return nil, err
	}
	return ens, nil
}

func checkEnsemble(ens *leaves.Ensemble, cm *checkedModel) error {
	if ens.NFeatures() != cm.numFeature || ens.NEstimators() != len(cm.trees) || ens.NOutputGroups() != 1 {
		return fmt.Errorf("%w: converted ensemble has %d features, %d trees, %d outputs; want %d, %d, 1",
			ErrFormat, ens.NFeatures(), ens.NEstimators(), ens.NOutputGroups(), cm.numFeature, len(cm.trees))
	}
	return nil
}
