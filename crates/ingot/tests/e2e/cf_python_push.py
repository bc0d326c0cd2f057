"""Pushes an app with the independent `cloudfoundry-client` library (PyPI),
the way a CF v3 client does it, then checks the app through the router.

Usage: cf_python_push.py API_URL USER PASSWORD APP_NAME APP_ZIP ROUTER_ADDR DOMAIN
Exits non-zero with a message on the first step that does not behave as CF's
v3 API documents it.
"""
import http.client
import sys
import time

from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.v3.packages import PackageType

api, user, password, name, zip_path, router, domain = sys.argv[1:8]


def wait(what, predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


client = CloudFoundryClient(api, verify=False)
client.init_with_user_credentials(user, password)
v3 = client.v3

orgs = list(v3.organizations.list(names="main"))
assert len(orgs) == 1, f"org main: {orgs}"
spaces = list(v3.spaces.list(names="dev", organization_guids=orgs[0]["guid"]))
assert len(spaces) == 1, f"space dev: {spaces}"
space_guid = spaces[0]["guid"]

app = v3.apps._create({"name": name, "relationships": {"space": {"data": {"guid": space_guid}}}})
app_guid = app["guid"]
assert list(v3.apps.list(names=name, space_guids=space_guid))[0]["guid"] == app_guid

domains = [d for d in v3.domains.list() if d["name"] == domain]
assert domains, f"shared domain {domain} not listed"
route = v3.routes._create({
    "host": name,
    "relationships": {"space": {"data": {"guid": space_guid}}, "domain": {"data": {"guid": domains[0]["guid"]}}},
})
client.post(f"{api}/v3/routes/{route['guid']}/destinations", json={"destinations": [{"app": {"guid": app_guid}}]})

package = v3.packages.create(app_guid, PackageType.BITS)
assert package["state"] == "AWAITING_UPLOAD", package
v3.packages._upload_bits(package["guid"], zip_path)
wait("the package to be READY", lambda: v3.packages.get(package["guid"])["state"] == "READY")

build = client.post(f"{api}/v3/builds", json={"package": {"guid": package["guid"]}}).json()
assert build["state"] == "STAGING", build
build = wait("the build to be STAGED",
             lambda: (lambda b: b if b["state"] in ("STAGED", "FAILED") else None)(
                 client.get(f"{api}/v3/builds/{build['guid']}").json()))
assert build["state"] == "STAGED", build
droplet_guid = build["droplet"]["guid"]
assert v3.droplets.get(droplet_guid)["state"] == "STAGED"

client.patch(f"{api}/v3/apps/{app_guid}/relationships/current_droplet", json={"data": {"guid": droplet_guid}})
v3.apps.restart(app_guid)


def answers():
    host, port = router.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/", headers={"Host": f"{name}.{domain}"})
        response = conn.getresponse()
        return response.status == 200 and response.read()
    except OSError:
        return None


body = wait("the app to answer through the router", answers)
print(body.decode())
