package kubernetes

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// defaultRootNamespace is MeshConfig's rootNamespace when the mesh config does not say.
const defaultRootNamespace = "istio-system"

// defaultMeshConfigMap is the ConfigMap istiod's mesh config comes from in an Istio install: its
// "mesh" key is the MeshConfig YAML.
const defaultMeshConfigMap = "istio-system/istio"

// meshConfigPoll is how often the mesh config file is read again. A ConfigMap mounted as a volume
// changes by a symlink swap, which reading catches where watching one inode would not.
var meshConfigPoll = 2 * time.Second

// meshDefaults are the MeshConfig fields names' visibility depends on.
type meshDefaults struct {
	File            string   // where they were read; "" for istiod's defaults
	RootNamespace   string   // "" is istio-system
	DefaultExportTo []string // defaultServiceExportTo; empty is ["*"]
}

func (d *meshDefaults) rootNamespace() string {
	if d.RootNamespace == "" {
		return defaultRootNamespace
	}
	return d.RootNamespace
}

// serviceExportTo is exportTo for Services and ServiceEntries that give none. istiod has no
// separate default for ServiceEntries: defaultServiceExportTo applies to both.
func (d *meshDefaults) serviceExportTo() []string {
	if len(d.DefaultExportTo) == 0 {
		return []string{exportPublic}
	}
	return d.DefaultExportTo
}

// parseMeshConfig reads the fields we use from a MeshConfig YAML document, the file istiod reads
// (--meshConfig, the "mesh" key of the istio ConfigMap). Other fields are ignored, as istiod ignores
// the ones it does not know; a field of the wrong type is an error naming it.
func parseMeshConfig(file string, data []byte) (meshDefaults, error) {
	d := meshDefaults{File: file}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return d, fmt.Errorf("mesh config %s: %v", file, err)
	}
	if doc["kind"] == "ConfigMap" { // the istio ConfigMap itself: its mesh key is the MeshConfig
		mesh, _, _ := unstructured.NestedString(doc, "data", "mesh")
		doc = nil
		if err := yaml.Unmarshal([]byte(mesh), &doc); err != nil {
			return d, fmt.Errorf("mesh config %s: data.mesh: %v", file, err)
		}
	}
	if v, ok := doc["rootNamespace"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return d, fmt.Errorf("mesh config %s: rootNamespace: want a namespace name, got %v", file, v)
		}
		d.RootNamespace = s
	}
	if v, ok := doc["defaultServiceExportTo"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return d, fmt.Errorf("mesh config %s: defaultServiceExportTo: want a list of namespaces, got %v", file, v)
		}
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return d, fmt.Errorf("mesh config %s: defaultServiceExportTo[%d]: want a string, got %v", file, i, e)
			}
			d.DefaultExportTo = append(d.DefaultExportTo, s)
		}
		for _, err := range checkExportTo(d.DefaultExportTo, "mesh config "+file, "defaultServiceExportTo") {
			return d, err
		}
	}
	return d, nil
}

// readMeshConfig reads and parses the mesh config file.
func readMeshConfig(file string) (meshDefaults, []byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return meshDefaults{File: file}, nil, fmt.Errorf("mesh config: %w", err)
	}
	d, err := parseMeshConfig(file, data)
	return d, data, err
}

// watchMeshConfig reads the file every meshConfigPoll until ctx ends, calling changed with each new
// good content; bad content is logged once per content and the last good kept.
func watchMeshConfig(ctx context.Context, file string, last []byte, changed func(meshDefaults), bad func(error)) {
	var lastBad []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(meshConfigPoll):
		}
		data, err := os.ReadFile(file)
		if err != nil {
			if lastBad == nil || len(lastBad) > 0 {
				bad(fmt.Errorf("mesh config: %w; keeping the last good one", err))
			}
			lastBad = []byte{}
			continue
		}
		if bytes.Equal(data, last) {
			lastBad = nil
			continue
		}
		if lastBad != nil && bytes.Equal(data, lastBad) {
			continue
		}
		d, err := parseMeshConfig(file, data)
		if err != nil {
			bad(fmt.Errorf("%v; keeping the last good one", err))
			lastBad = data
			continue
		}
		last, lastBad = data, nil
		changed(d)
	}
}

// meshConfigMapChanged reads the watched mesh ConfigMap again from the informer's store: its "mesh"
// key when it exists, istiod's defaults when it does not (no Istio, or not yet). Bad content is
// counted and logged, and the last good kept.
func (s *Source) meshConfigMapChanged(store cache.Store) {
	where := "configmap " + s.cfg.MeshConfigMap
	var data []byte
	if obj, ok, _ := store.GetByKey(s.cfg.MeshConfigMap); ok {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			data = []byte(cm.Data["mesh"])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meshRead && bytes.Equal(data, s.meshData) {
		return
	}
	d, err := parseMeshConfig(where, data)
	if err != nil {
		invalidTotal.WithLabelValues(s.cfg.Cluster, "meshconfig").Inc()
		log.Errorf("%s: %v; keeping the last good one", s, err)
		return
	}
	if s.meshRead {
		log.Infof("%s: mesh config %s changed", s, where)
	}
	s.mesh, s.meshData, s.meshRead, s.dirty.vis = d, data, true, true
	s.signal() // does not block
}
