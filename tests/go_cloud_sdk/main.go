// Command go_cloud_sdk drives the platform's Cloud Ops API (gRPC CloudService) with Temporal's Go Cloud SDK,
// go.temporal.io/cloud-sdk and its cloudclient package, unchanged: namespaces, a service account's API key and a
// user, created, listed, updated and deleted, with the refusals a client relies on (a stale resource_version is
// FailedPrecondition, a missing namespace NotFound).
//
// It prints one JSON line per checkpoint (with -pause it then waits for a line on stdin, so a test can look at the
// platform's state in between) and a JSON summary of what it observed as its last line; it exits 1 on the first
// mismatch (the summary says which), 2 on bad flags. tests/test_go_cloud_sdk.py runs it; launcher/gobuild.py
// builds it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"go.temporal.io/cloud-sdk/api/cloudservice/v1"
	"go.temporal.io/cloud-sdk/api/identity/v1"
	"go.temporal.io/cloud-sdk/api/namespace/v1"
	"go.temporal.io/cloud-sdk/api/operation/v1"
	"go.temporal.io/cloud-sdk/api/resource/v1"
	"go.temporal.io/cloud-sdk/cloudclient"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// mismatch is what the platform answered differently from what the SDK's caller expects.
type mismatch struct{ msg string }

func (m mismatch) Error() string { return m.msg }

func failf(format string, args ...any) error { return mismatch{fmt.Sprintf(format, args...)} }

type run struct {
	ctx      context.Context
	endpoint string
	version  string
	cloud    cloudservice.CloudServiceClient
	pause    bool
	stdin    *bufio.Reader
	out      *json.Encoder
	summary  map[string]any
	steps    []string
}

func (r *run) step(name string) { r.steps = append(r.steps, name) }

func (r *run) observe(key string, value any) { r.summary[key] = value }

// checkpoint tells the caller where the run is (one JSON line) and, with -pause, waits for its go-ahead.
func (r *run) checkpoint(name string, details map[string]any) error {
	line := map[string]any{"checkpoint": name}
	for k, v := range details {
		line[k] = v
	}
	if err := r.out.Encode(line); err != nil {
		return err
	}
	if r.pause {
		if _, err := r.stdin.ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the go-ahead after checkpoint %s: %w", name, err)
		}
	}
	return nil
}

// refused checks that a call failed with the given gRPC code and returns its message.
func refused(err error, want codes.Code, what string) (string, error) {
	if err == nil {
		return "", failf("%s: succeeded, expected %s", what, want)
	}
	got, ok := status.FromError(err)
	if !ok || got.Code() != want {
		return "", failf("%s: expected %s, got %v", what, want, err)
	}
	return got.Message(), nil
}

func (r *run) client(apiKey string) (*cloudclient.Client, error) {
	return cloudclient.New(cloudclient.Options{
		HostPort:      r.endpoint,
		APIKey:        apiKey,
		AllowInsecure: true, // plaintext locally; the OKE ingress serves TLS
		APIVersion:    r.version,
		UserAgent:     "tcloud-go-cloud-sdk-test/1",
	})
}

// await polls GetAsyncOperation until the operation leaves PENDING/IN_PROGRESS and checks it was FULFILLED.
func (r *run) await(op *operation.AsyncOperation, what string) error {
	if op.GetId() == "" {
		return failf("%s: the answer carries no async operation", what)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := r.cloud.GetAsyncOperation(r.ctx, &cloudservice.GetAsyncOperationRequest{AsyncOperationId: op.GetId()})
		if err != nil {
			return fmt.Errorf("%s: GetAsyncOperation %s: %w", what, op.GetId(), err)
		}
		state := got.GetAsyncOperation().GetState()
		switch state {
		case operation.AsyncOperation_STATE_PENDING, operation.AsyncOperation_STATE_IN_PROGRESS:
			if time.Now().After(deadline) {
				return failf("%s: operation %s still %s after 90s", what, op.GetId(), state)
			}
			time.Sleep(200 * time.Millisecond)
		case operation.AsyncOperation_STATE_FULFILLED:
			return nil
		default:
			return failf("%s: operation %s ended %s: %s", what, op.GetId(), state,
				got.GetAsyncOperation().GetFailureReason())
		}
	}
}

func (r *run) namespace(ns string) (*namespace.Namespace, error) {
	got, err := r.cloud.GetNamespace(r.ctx, &cloudservice.GetNamespaceRequest{Namespace: ns})
	if err != nil {
		return nil, fmt.Errorf("GetNamespace %s: %w", ns, err)
	}
	return got.GetNamespace(), nil
}

func (r *run) all(name string) error {
	who, err := r.cloud.GetCurrentIdentity(r.ctx, &cloudservice.GetCurrentIdentityRequest{})
	if err != nil {
		return fmt.Errorf("GetCurrentIdentity: %w", err)
	}
	r.step("GetCurrentIdentity")
	r.observe("caller_api_key", who.GetPrincipalApiKey().GetId())

	// --- a namespace: create, list, get, update, refusals --------------------------------------------------
	create := &cloudservice.CreateNamespaceRequest{Spec: &namespace.NamespaceSpec{
		Name: name, RetentionDays: 3, Regions: []string{*region},
		ApiKeyAuth: &namespace.ApiKeyAuthSpec{Enabled: true},
	}}
	created, err := r.cloud.CreateNamespace(r.ctx, create)
	if err != nil {
		return fmt.Errorf("CreateNamespace: %w", err)
	}
	ns := created.GetNamespace()
	r.step("CreateNamespace")
	r.observe("namespace", ns)
	r.observe("create_operation_id", created.GetAsyncOperation().GetId())
	// The SDK's interceptor filled async_operation_id with a UUID (its idempotency key for retries).
	if create.GetAsyncOperationId() == "" || created.GetAsyncOperation().GetId() != create.GetAsyncOperationId() {
		return failf("CreateNamespace: operation %q is not the SDK's async_operation_id %q",
			created.GetAsyncOperation().GetId(), create.GetAsyncOperationId())
	}
	if err := r.await(created.GetAsyncOperation(), "CreateNamespace"); err != nil {
		return err
	}
	r.step("GetAsyncOperation")
	again, err := r.cloud.CreateNamespace(r.ctx, create) // what the SDK's retry sends: the same operation id
	if err != nil {
		return fmt.Errorf("CreateNamespace repeated with its async_operation_id: %w", err)
	}
	if again.GetNamespace() != ns || again.GetAsyncOperation().GetId() != created.GetAsyncOperation().GetId() {
		return failf("CreateNamespace repeated: answered %s/%s, not the first call's %s/%s", again.GetNamespace(),
			again.GetAsyncOperation().GetId(), ns, created.GetAsyncOperation().GetId())
	}
	r.step("CreateNamespace (retry, same async_operation_id)")

	listed, err := r.cloud.GetNamespaces(r.ctx, &cloudservice.GetNamespacesRequest{Name: name})
	if err != nil {
		return fmt.Errorf("GetNamespaces: %w", err)
	}
	var names []string
	for _, n := range listed.GetNamespaces() {
		names = append(names, n.GetNamespace())
	}
	if !slices.Equal(names, []string{ns}) {
		return failf("GetNamespaces name=%s: listed %v, expected [%s]", name, names, ns)
	}
	found := false
	for token := ""; ; {
		page, err := r.cloud.GetNamespaces(r.ctx, &cloudservice.GetNamespacesRequest{PageSize: 1, PageToken: token})
		if err != nil {
			return fmt.Errorf("GetNamespaces page: %w", err)
		}
		for _, n := range page.GetNamespaces() {
			found = found || n.GetNamespace() == ns
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if !found {
		return failf("GetNamespaces: %s is on no page", ns)
	}
	r.step("GetNamespaces")

	got, err := r.namespace(ns)
	if err != nil {
		return err
	}
	if got.GetSpec().GetRetentionDays() != 3 || got.GetState() != resource.ResourceState_RESOURCE_STATE_ACTIVE ||
		got.GetSpec().GetName() != name || !slices.Equal(got.GetSpec().GetRegions(), []string{*region}) ||
		!got.GetSpec().GetApiKeyAuth().GetEnabled() {
		return failf("GetNamespace after create: %v", got)
	}
	stale := got.GetResourceVersion()
	r.step("GetNamespace")
	r.observe("grpc_address", got.GetEndpoints().GetGrpcAddress())

	spec := got.GetSpec()
	spec.RetentionDays = 5
	updated, err := r.cloud.UpdateNamespace(r.ctx, &cloudservice.UpdateNamespaceRequest{
		Namespace: ns, Spec: spec, ResourceVersion: stale})
	if err != nil {
		return fmt.Errorf("UpdateNamespace: %w", err)
	}
	if err := r.await(updated.GetAsyncOperation(), "UpdateNamespace"); err != nil {
		return err
	}
	r.step("UpdateNamespace")
	got, err = r.namespace(ns)
	if err != nil {
		return err
	}
	if got.GetSpec().GetRetentionDays() != 5 || got.GetResourceVersion() == stale {
		return failf("GetNamespace after the update: retention %d (expected 5), resource_version %q (was %q)",
			got.GetSpec().GetRetentionDays(), got.GetResourceVersion(), stale)
	}
	r.observe("retention_days", got.GetSpec().GetRetentionDays())
	r.observe("resource_versions", []string{stale, got.GetResourceVersion()})

	spec.RetentionDays = 6
	_, err = r.cloud.UpdateNamespace(r.ctx, &cloudservice.UpdateNamespaceRequest{
		Namespace: ns, Spec: spec, ResourceVersion: stale})
	msg, err := refused(err, codes.FailedPrecondition, "UpdateNamespace with a stale resource_version")
	if err != nil {
		return err
	}
	r.observe("stale_update", map[string]string{"code": codes.FailedPrecondition.String(), "message": msg})
	if got, err = r.namespace(ns); err != nil {
		return err
	} else if got.GetSpec().GetRetentionDays() != 5 {
		return failf("a refused update changed the retention to %d", got.GetSpec().GetRetentionDays())
	}

	missing := "missing-" + name + ns[len(name):]
	_, err = r.cloud.GetNamespace(r.ctx, &cloudservice.GetNamespaceRequest{Namespace: missing})
	if msg, err = refused(err, codes.NotFound, "GetNamespace of a missing namespace"); err != nil {
		return err
	}
	r.observe("missing_namespace", map[string]string{"code": codes.NotFound.String(), "message": msg})
	if err := r.checkpoint("namespace-updated", map[string]any{"namespace": ns, "retention_days": 5}); err != nil {
		return err
	}

	// --- a service account's API key: create, list, disable, delete ------------------------------------------
	sa, err := r.cloud.CreateServiceAccount(r.ctx, &cloudservice.CreateServiceAccountRequest{
		Spec: &identity.ServiceAccountSpec{Name: "ci-" + name, Description: "Go Cloud SDK test", Access: &identity.Access{
			AccountAccess:     &identity.AccountAccess{Role: identity.AccountAccess_ROLE_DEVELOPER},
			NamespaceAccesses: map[string]*identity.NamespaceAccess{ns: {Permission: identity.NamespaceAccess_PERMISSION_WRITE}},
		}}})
	if err != nil {
		return fmt.Errorf("CreateServiceAccount: %w", err)
	}
	if err := r.await(sa.GetAsyncOperation(), "CreateServiceAccount"); err != nil {
		return err
	}
	saID := sa.GetServiceAccountId()
	r.step("CreateServiceAccount")
	r.observe("service_account_id", saID)

	expiry := timestamppb.New(time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second))
	key, err := r.cloud.CreateApiKey(r.ctx, &cloudservice.CreateApiKeyRequest{Spec: &identity.ApiKeySpec{
		OwnerId: saID, OwnerType: identity.OwnerType_OWNER_TYPE_SERVICE_ACCOUNT, DisplayName: "ci-" + name,
		Description: "made by the Go Cloud SDK", ExpiryTime: expiry}})
	if err != nil {
		return fmt.Errorf("CreateApiKey: %w", err)
	}
	if err := r.await(key.GetAsyncOperation(), "CreateApiKey"); err != nil {
		return err
	}
	if key.GetKeyId() == "" || key.GetToken() == "" {
		return failf("CreateApiKey answered key %q with token set=%v", key.GetKeyId(), key.GetToken() != "")
	}
	r.step("CreateApiKey")
	r.observe("api_key_id", key.GetKeyId())

	asKey, err := r.client(key.GetToken())
	if err != nil {
		return err
	}
	defer func() { _ = asKey.Close() }()
	me, err := asKey.CloudService().GetCurrentIdentity(r.ctx, &cloudservice.GetCurrentIdentityRequest{})
	if err != nil {
		return fmt.Errorf("GetCurrentIdentity with the new key: %w", err)
	}
	if me.GetPrincipalApiKey().GetId() != key.GetKeyId() || me.GetServiceAccount().GetId() != saID {
		return failf("GetCurrentIdentity with the new key: key %q service account %q, expected %q %q",
			me.GetPrincipalApiKey().GetId(), me.GetServiceAccount().GetId(), key.GetKeyId(), saID)
	}

	keys, err := r.cloud.GetApiKeys(r.ctx, &cloudservice.GetApiKeysRequest{OwnerId: saID})
	if err != nil {
		return fmt.Errorf("GetApiKeys: %w", err)
	}
	if len(keys.GetApiKeys()) != 1 || keys.GetApiKeys()[0].GetId() != key.GetKeyId() {
		return failf("GetApiKeys owner_id=%s: %v, expected just %s", saID, keys.GetApiKeys(), key.GetKeyId())
	}
	listedKey := keys.GetApiKeys()[0]
	if listedKey.GetSpec().GetDisabled() || listedKey.GetSpec().GetOwnerType() != identity.OwnerType_OWNER_TYPE_SERVICE_ACCOUNT ||
		!listedKey.GetSpec().GetExpiryTime().AsTime().Equal(expiry.AsTime()) {
		return failf("GetApiKeys: the new key reads %v", listedKey.GetSpec())
	}
	r.step("GetApiKeys")

	keySpec := listedKey.GetSpec()
	keySpec.Disabled = true
	disabled, err := r.cloud.UpdateApiKey(r.ctx, &cloudservice.UpdateApiKeyRequest{
		KeyId: key.GetKeyId(), Spec: keySpec, ResourceVersion: listedKey.GetResourceVersion()})
	if err != nil {
		return fmt.Errorf("UpdateApiKey (disable): %w", err)
	}
	if err := r.await(disabled.GetAsyncOperation(), "UpdateApiKey"); err != nil {
		return err
	}
	r.step("UpdateApiKey (disable)")
	read, err := r.cloud.GetApiKey(r.ctx, &cloudservice.GetApiKeyRequest{KeyId: key.GetKeyId()})
	if err != nil {
		return fmt.Errorf("GetApiKey: %w", err)
	}
	if !read.GetApiKey().GetSpec().GetDisabled() || read.GetApiKey().GetResourceVersion() == listedKey.GetResourceVersion() {
		return failf("GetApiKey after disabling: %v", read.GetApiKey())
	}
	_, err = asKey.CloudService().GetCurrentIdentity(r.ctx, &cloudservice.GetCurrentIdentityRequest{})
	if msg, err = refused(err, codes.Unauthenticated, "a call with the disabled key"); err != nil {
		return err
	}
	r.observe("disabled_key_call", map[string]string{"code": codes.Unauthenticated.String(), "message": msg})
	if err := r.checkpoint("key-disabled", map[string]any{"key_id": key.GetKeyId()}); err != nil {
		return err
	}

	deletedKey, err := r.cloud.DeleteApiKey(r.ctx, &cloudservice.DeleteApiKeyRequest{
		KeyId: key.GetKeyId(), ResourceVersion: read.GetApiKey().GetResourceVersion()})
	if err != nil {
		return fmt.Errorf("DeleteApiKey: %w", err)
	}
	if err := r.await(deletedKey.GetAsyncOperation(), "DeleteApiKey"); err != nil {
		return err
	}
	r.step("DeleteApiKey")
	_, err = r.cloud.GetApiKey(r.ctx, &cloudservice.GetApiKeyRequest{KeyId: key.GetKeyId()})
	if _, err = refused(err, codes.NotFound, "GetApiKey of the deleted key"); err != nil {
		return err
	}
	if keys, err = r.cloud.GetApiKeys(r.ctx, &cloudservice.GetApiKeysRequest{OwnerId: saID}); err != nil {
		return fmt.Errorf("GetApiKeys after the deletion: %w", err)
	} else if len(keys.GetApiKeys()) != 0 {
		return failf("GetApiKeys after the deletion: %v", keys.GetApiKeys())
	}

	// --- a user with access to the namespace: create, list, delete -------------------------------------------
	email := name + "@example.com"
	user, err := r.cloud.CreateUser(r.ctx, &cloudservice.CreateUserRequest{Spec: &identity.UserSpec{
		Email: email, Access: &identity.Access{
			AccountAccess:     &identity.AccountAccess{Role: identity.AccountAccess_ROLE_READ},
			NamespaceAccesses: map[string]*identity.NamespaceAccess{ns: {Permission: identity.NamespaceAccess_PERMISSION_WRITE}},
		}}})
	if err != nil {
		return fmt.Errorf("CreateUser: %w", err)
	}
	if err := r.await(user.GetAsyncOperation(), "CreateUser"); err != nil {
		return err
	}
	r.step("CreateUser")
	r.observe("user_id", user.GetUserId())
	users, err := r.cloud.GetUsers(r.ctx, &cloudservice.GetUsersRequest{Email: email})
	if err != nil {
		return fmt.Errorf("GetUsers: %w", err)
	}
	if len(users.GetUsers()) != 1 || users.GetUsers()[0].GetId() != user.GetUserId() {
		return failf("GetUsers email=%s: %v, expected just %s", email, users.GetUsers(), user.GetUserId())
	}
	listedUser := users.GetUsers()[0]
	access := listedUser.GetSpec().GetAccess()
	if access.GetAccountAccess().GetRole() != identity.AccountAccess_ROLE_READ ||
		access.GetNamespaceAccesses()[ns].GetPermission() != identity.NamespaceAccess_PERMISSION_WRITE {
		return failf("GetUsers: the user's access reads %v", access)
	}
	inNamespace, err := r.cloud.GetUsers(r.ctx, &cloudservice.GetUsersRequest{Namespace: ns})
	if err != nil {
		return fmt.Errorf("GetUsers namespace=%s: %w", ns, err)
	}
	if !slices.ContainsFunc(inNamespace.GetUsers(), func(u *identity.User) bool { return u.GetId() == user.GetUserId() }) {
		return failf("GetUsers namespace=%s does not list %s", ns, user.GetUserId())
	}
	r.step("GetUsers")
	if err := r.checkpoint("user-created", map[string]any{"user_id": user.GetUserId(), "email": email}); err != nil {
		return err
	}

	_, err = r.cloud.DeleteUser(r.ctx, &cloudservice.DeleteUserRequest{UserId: user.GetUserId(), ResourceVersion: "0" + listedUser.GetResourceVersion() + "9"})
	if _, err = refused(err, codes.FailedPrecondition, "DeleteUser with a stale resource_version"); err != nil {
		return err
	}
	deletedUser, err := r.cloud.DeleteUser(r.ctx, &cloudservice.DeleteUserRequest{
		UserId: user.GetUserId(), ResourceVersion: listedUser.GetResourceVersion()})
	if err != nil {
		return fmt.Errorf("DeleteUser: %w", err)
	}
	if err := r.await(deletedUser.GetAsyncOperation(), "DeleteUser"); err != nil {
		return err
	}
	r.step("DeleteUser")
	if users, err = r.cloud.GetUsers(r.ctx, &cloudservice.GetUsersRequest{Email: email}); err != nil {
		return fmt.Errorf("GetUsers after the deletion: %w", err)
	} else if len(users.GetUsers()) != 0 {
		return failf("GetUsers after the deletion: %v", users.GetUsers())
	}
	_, err = r.cloud.GetUser(r.ctx, &cloudservice.GetUserRequest{UserId: user.GetUserId()})
	if _, err = refused(err, codes.NotFound, "GetUser of the deleted user"); err != nil {
		return err
	}

	deletedSA, err := r.cloud.DeleteServiceAccount(r.ctx, &cloudservice.DeleteServiceAccountRequest{ServiceAccountId: saID})
	if err != nil {
		return fmt.Errorf("DeleteServiceAccount: %w", err)
	}
	if err := r.await(deletedSA.GetAsyncOperation(), "DeleteServiceAccount"); err != nil {
		return err
	}
	r.step("DeleteServiceAccount")

	// --- the namespace goes ------------------------------------------------------------------------------------
	deleted, err := r.cloud.DeleteNamespace(r.ctx, &cloudservice.DeleteNamespaceRequest{
		Namespace: ns, ResourceVersion: got.GetResourceVersion()})
	if err != nil {
		return fmt.Errorf("DeleteNamespace: %w", err)
	}
	if err := r.await(deleted.GetAsyncOperation(), "DeleteNamespace"); err != nil {
		return err
	}
	r.step("DeleteNamespace")
	_, err = r.cloud.GetNamespace(r.ctx, &cloudservice.GetNamespaceRequest{Namespace: ns})
	if _, err = refused(err, codes.NotFound, "GetNamespace of the deleted namespace"); err != nil {
		return err
	}
	return nil
}

var region = flag.String("region", "local", "the platform's region (TCLOUD_CLOUD_REGION)")

func main() {
	endpoint := flag.String("endpoint", os.Getenv("TEMPORAL_CLOUD_ENDPOINT"),
		"the Cloud Ops API's host:port, plaintext (default $TEMPORAL_CLOUD_ENDPOINT)")
	name := flag.String("name", "", "the namespace's name (default: gosdk-<unix time>)")
	version := flag.String("api-version", "", "temporal-cloud-api-version to send (default: the SDK's own)")
	pause := flag.Bool("pause", false, "after each checkpoint line, wait for a line on stdin")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	apiKey := os.Getenv("TEMPORAL_CLOUD_API_KEY") // an environment variable, never a flag: not in ps output
	if *endpoint == "" || apiKey == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: TEMPORAL_CLOUD_API_KEY=<key> go_cloud_sdk -endpoint host:port [-name n] [-region r] [-pause]")
		os.Exit(2)
	}
	if *name == "" {
		*name = fmt.Sprintf("gosdk-%d", time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sent := *version
	if sent == "" {
		sent = cloudclient.DefaultAPIVersion()
	}
	r := &run{ctx: ctx, endpoint: *endpoint, version: *version, pause: *pause,
		stdin: bufio.NewReader(os.Stdin), out: json.NewEncoder(os.Stdout),
		summary: map[string]any{"endpoint": *endpoint, "api_version": sent}}
	client, err := r.client(apiKey)
	if err == nil {
		r.cloud = client.CloudService()
		err = r.all(*name)
		_ = client.Close()
	}
	r.summary["steps"] = r.steps
	r.summary["ok"] = err == nil
	code := 0
	if err != nil {
		r.summary["error"] = err.Error()
		var m mismatch
		r.summary["mismatch"] = errors.As(err, &m)
		code = 1
	}
	if encodeErr := r.out.Encode(r.summary); encodeErr != nil {
		fmt.Fprintln(os.Stderr, encodeErr)
		code = 1
	}
	os.Exit(code)
}
