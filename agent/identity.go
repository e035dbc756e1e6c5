package agent

import (
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// Files of the state directory.
const (
	KeyFile         = "agent.key"         // PKCS #8 PEM, owner-only
	CertFile        = "agent.pem"         // leaf, then its chain
	CatalogKeysFile = "catalog-keys.json" // the tenant's catalog signing keys
)

// ErrNotEnrolled means the state directory holds no identity.
var ErrNotEnrolled = errors.New("not enrolled: run sekisho agent enroll first")

// CatalogKey is one of the tenant's catalog signing keys, with which the
// agent verifies signed payload redirects.
type CatalogKey struct {
	ID string `json:"id"`
	// PublicKey is an Ed25519 public key; base64 in JSON.
	PublicKey ed25519.PublicKey `json:"public_key"`
}

// Identity is what the state directory holds.
type Identity struct {
	Key crypto.Signer
	// Chain is the certificate, leaf first.
	Chain       []*x509.Certificate
	Principal   auth.Principal
	CatalogKeys []CatalogKey
}

// Leaf returns the agent's certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.Chain[0] }

// TLSCertificate returns the identity as a TLS client certificate.
func (id *Identity) TLSCertificate() tls.Certificate {
	return certs.TLSCertificate(id.Chain[0], id.Key, id.Chain[1:]...)
}

// LoadIdentity reads the identity in dir. It wraps ErrNotEnrolled when the
// key or the certificate is missing, and refuses a key file that others
// may read.
func LoadIdentity(dir string) (*Identity, error) {
	st := store{dir: dir}
	key, err := st.loadKey()
	if err != nil {
		return nil, err
	}
	chain, err := certs.LoadCerts(st.path(CertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", st.path(CertFile), ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not hold the key of %s: enroll again", st.path(KeyFile), st.path(CertFile))
	}
	p, err := auth.PrincipalOf(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st.path(CertFile), err)
	}
	keys, err := st.loadCatalogKeys()
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, Chain: chain, Principal: p, CatalogKeys: keys}, nil
}

// store reads and writes the files of a state directory.
type store struct{ dir string }

func (s store) path(name string) string { return filepath.Join(s.dir, name) }

func (s store) loadKey() (crypto.Signer, error) {
	path := s.path(KeyFile)
	if err := checkPrivate(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotEnrolled)
	} else if err != nil {
		return nil, err
	}
	return certs.LoadKey(path)
}

// loadCatalogKeys reads the catalog keys; a missing file means none.
func (s store) loadCatalogKeys() ([]CatalogKey, error) {
	path := s.path(CatalogKeysFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []CatalogKey
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkCatalogKeys(keys); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

func checkCatalogKeys(keys []CatalogKey) error {
	for i, k := range keys {
		if k.ID == "" {
			return fmt.Errorf("catalog key %d: no id", i)
		}
		if len(k.PublicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("catalog key %q: want a %d-byte Ed25519 public key, got %d bytes", k.ID, ed25519.PublicKeySize, len(k.PublicKey))
		}
	}
	return nil
}

// ensureDir creates the state directory, owner-only.
func (s store) ensureDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return restrictPath(s.dir, true)
}

func (s store) saveKey(key crypto.Signer) error {
	data, err := certs.EncodeKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.path(KeyFile), data)
}

func (s store) saveChain(chain []*x509.Certificate) error {
	var data []byte
	for _, c := range chain {
		data = append(data, certs.EncodeCert(c.Raw)...)
	}
	return writeFileAtomic(s.path(CertFile), data)
}

func (s store) saveCatalogKeys(keys []CatalogKey) error {
	if keys == nil {
		keys = []CatalogKey{}
	}
	data, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.path(CatalogKeysFile), append(data, '\n'))
}

// save writes a whole identity: key, then certificate, then catalog keys.
func (s store) save(id *Identity) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := s.saveKey(id.Key); err != nil {
		return err
	}
	if err := s.saveChain(id.Chain); err != nil {
		return err
	}
	return s.saveCatalogKeys(id.CatalogKeys)
}

// writeFileAtomic replaces path with data, owner-only: a temporary file in
// the same directory is restricted, written, synced, then renamed over
// path, so that a reader sees the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(certs.KeyFileMode); err != nil {
		return err
	}
	if err = restrictPath(tmp, false); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
