package kubernetes

import (
	"context"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// tokenLifetime is the lifetime asked of each token: an hour, as a projected token's default.
const tokenLifetime = time.Hour

// tokenClient is the client of Token, made at its first use.
type tokenClient struct {
	once sync.Once
	kube kubernetes.Interface
	err  error
}

// Token implements source.Tokens: a TokenRequest for ServiceAccount namespace/serviceAccount with
// audience, valid for an hour. It needs create on serviceaccounts/token in that namespace.
func (s *Source) Token(ctx context.Context, namespace, serviceAccount, audience string) (string, time.Time, error) {
	s.tokens.once.Do(func() { s.tokens.kube, s.tokens.err = kubernetes.NewForConfig(s.rest) })
	if s.tokens.err != nil {
		return "", time.Time{}, s.tokens.err
	}
	exp := int64(tokenLifetime / time.Second)
	tr, err := s.tokens.kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token for serviceaccount %s/%s: %w", namespace, serviceAccount, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}
