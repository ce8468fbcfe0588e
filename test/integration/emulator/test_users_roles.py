"""Users and roles as 4.6 has them (cloudify-manager 4.6 rest-service: resources_v3/users.py,
security/authentication.py, security/authorization.py; cloudify-manager-install 4.6's
authorization.conf): a user with the `default` system role may read /status and nothing of a
tenant, through the real cfy 4.6 and over REST. One cluster for the module: these tests put
back what they change."""

import pytest

from cfylab import cfy, ok, rest

pytestmark = pytest.mark.usefixtures("shared_cluster", "licensed")

CHECKER = ("lbcheck", "Check-pw-123")


@pytest.fixture(scope="module")
def licensed(shared_cluster, emulator):
    """The cluster's license: 4.6 (premium) answers /users with 400 missing_cloudify_license
    until the manager has one (rest-service constants.py ALLOWED_LICENSE_ENDPOINTS has no
    `users`; cfyemu/README.md, "License gate")."""
    emulator.ensure_license("mgr1")


@pytest.fixture
def checker(lab):
    """A user with 4.6's `default` role, made through the real cfy 4.6 on the active node."""
    ok(cfy(lab["mgr1"], "users", "create", "-r", "default", "-p", CHECKER[1], CHECKER[0]))
    try:
        yield CHECKER
    finally:
        assert rest(lab["mgr1"].ip, "DELETE", f"/users/{CHECKER[0]}").status == 200


def test_a_user_made_by_the_real_cfy_has_the_default_role_and_no_tenant(lab, checker):
    answer = rest(lab["mgr1"].ip, "GET", f"/users/{checker[0]}")
    assert answer.status == 200, answer
    assert {k: answer.body[k] for k in ("username", "role", "tenants", "groups", "active")} == {
        "username": "lbcheck", "role": "default", "tenants": 0, "groups": 0, "active": True}
    detailed = rest(lab["mgr1"].ip, "GET", f"/users/{checker[0]}?_get_data=true").body
    assert (detailed["tenants"], detailed["tenant_roles"]) == ({}, {"direct": {}, "groups": {}})
    # the bootstrap admin: sys_admin, and `user` in the default tenant (4.6's storage_utils)
    admin = rest(lab["mgr1"].ip, "GET", "/users/admin?_get_data=true").body
    assert (admin["role"], admin["tenants"]) == (
        "sys_admin", {"default_tenant": {"tenant-role": "user", "roles": ["user"]}})


@pytest.mark.parametrize("tenant", ["default_tenant", None], ids=["tenant header", "none"])
def test_the_default_role_reads_status_and_nothing_else(lab, checker, tenant):
    ip = lab["mgr1"].ip
    assert rest(ip, "GET", "/status", auth=checker, tenant=tenant).status == 200
    assert rest(ip, "GET", "/maintenance", auth=checker, tenant=tenant).status == 200
    where = " in the tenant `default_tenant`" if tenant else ""
    for method, path, action in (("GET", "/blueprints", "blueprint_list"),
                                 ("GET", "/cluster/nodes", "cluster_node_list"),
                                 ("GET", "/cluster", "cluster_status_get"),
                                 ("GET", "/users/admin", "user_get"),
                                 ("PUT", "/users", "user_create")):
        answer = rest(ip, method, path, auth=checker, tenant=tenant,
                      body={"username": "x", "password": "y"} if method == "PUT" else None)
        assert (answer.status, answer.body["error_code"], answer.body["message"]) == (
            403, "forbidden_error",
            f"User `lbcheck` is not permitted to perform the action {action}{where}"), path


def test_authentication_failures_say_what_4_6_says(lab, checker):
    ip = lab["mgr1"].ip
    for auth, message in (
            (("lbcheck", "wrong-pw-1"), "User unauthorized: Authentication failed for "
                                        "<User username=`lbcheck`>. Bad credentials or locked "
                                        "account"),
            (("nobody", "Check-pw-123"), "User unauthorized: Authentication failed for "
                                         "<User username=`nobody`>"),
            (None, "User unauthorized: No authentication info provided")):
        answer = rest(ip, "GET", "/status", auth=auth)
        assert (answer.status, answer.body["error_code"], answer.body["message"]) == (
            401, "unauthorized_error", message), auth


def test_a_tenant_that_does_not_exist_is_forbidden(lab):
    answer = rest(lab["mgr1"].ip, "GET", "/status", tenant="nope")
    assert (answer.status, answer.body["message"]) == (
        403, "Authorization failed: Tried to authenticate with invalid tenant name: nope")


@pytest.mark.parametrize("body, message", [
    ({"username": "lbcheck2", "password": "shrt"},
     "The password is too short. Minimum allowed length is 5 characters"),
    ({"username": "_lbcheck", "password": "Check-pw-123"},
     "The `username` argument must begin with a letter"),
    ({"username": "lb check", "password": "Check-pw-123"},
     'The `username` argument contains illegal characters. Only letters, digits and the '
     'characters "-", "." and "_" are allowed'),
    ({"username": "lbcheck2", "password": "Check-pw-123", "role": "viewer"},
     "Role `viewer` is a tenant_role and cannot be assigned as a system_role"),
    ({"username": "lbcheck2", "password": "Check-pw-123", "role": "root"},
     "Invalid role: `root`. Valid system_role roles are: ['sys_admin', 'default']"),
    ({"username": "lbcheck2"}, "Missing password in json request body"),
], ids=["short password", "leading underscore", "space", "tenant role", "unknown role",
        "no password"])
def test_a_user_4_6_would_not_create_is_refused(lab, body, message):
    answer = rest(lab["mgr1"].ip, "PUT", "/users", body=body)
    assert (answer.status, answer.body["error_code"], answer.body["message"]) == (
        400, "bad_parameters_error", message)
    assert rest(lab["mgr1"].ip, "GET", "/users/lbcheck2").status == 404


def test_a_user_that_exists_is_not_created_twice_and_a_missing_one_is_404(lab, checker):
    answer = rest(lab["mgr1"].ip, "PUT", "/users",
                  body={"username": "lbcheck", "password": "Other-pw-123", "role": "default"})
    assert (answer.status, answer.body["error_code"]) == (409, "storage_error")
    assert rest(lab["mgr1"].ip, "GET", "/status", auth=checker).status == 200  # unchanged
    missing = rest(lab["mgr1"].ip, "GET", "/users/ghost")
    assert (missing.status, missing.body["message"]) == (
        404, "Requested `User` with ID `ghost` was not found")


def test_the_real_cfy_sets_a_users_password(lab, checker):
    ok(cfy(lab["mgr1"], "users", "set-password", "-p", "Rotated-pw-123", checker[0]))
    assert rest(lab["mgr1"].ip, "GET", "/status", auth=checker).status == 401
    assert rest(lab["mgr1"].ip, "GET", "/status", auth=(checker[0], "Rotated-pw-123")).status \
        == 200


def test_a_replica_answers_the_users_calls_as_every_call(lab, checker):
    for method, path in (("GET", f"/users/{checker[0]}"), ("PUT", "/users")):
        answer = rest(lab["mgr2"].ip, method, path, body={} if method == "PUT" else None)
        assert (answer.status, answer.body["error_code"]) == (400, "not_cluster_master")
