//! An admin manages a custom buildpack with cf's commands: create it from a
//! directory at position 1, see detection pick it for an app that names no
//! buildpack, disable it, delete it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::platform::Platform;

/// Writes an executable script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The `buildpacks --json` entry named `name`.
fn listed(platform: &Platform, name: &str) -> Option<serde_json::Value> {
    let json: serde_json::Value =
        serde_json::from_str(&platform.cli(&["buildpacks", "--json"])).expect("buildpacks --json");
    json.as_array()
        .expect("a list")
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
}

/// `create-buildpack`, detection by position, `update-buildpack --disable`,
/// `delete-buildpack -f`.
pub fn an_admin_manages_buildpacks(platform: &Platform, work: &Path) {
    // An old-style (detect/compile/release) buildpack that only apps with
    // an e2e-bp-marker.txt match; it serves the marker's text.
    let bp = work.join("e2e-buildpack");
    std::fs::create_dir_all(bp.join("bin")).expect("buildpack dir");
    script(
        &bp.join("bin/detect"),
        "#!/bin/bash\n[ -f \"$1/e2e-bp-marker.txt\" ] && echo e2e-bp && exit 0\nexit 1\n",
    );
    script(
        &bp.join("bin/compile"),
        r#"#!/bin/bash
set -e
echo "-----> e2e-bp: compile"
cat > "$1/e2e-serve.py" <<'PY'
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
text = (open("e2e-bp-marker.txt").read().strip() + " via e2e-bp").encode()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(text))); self.end_headers(); self.wfile.write(text)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
PY
"#,
    );
    script(
        &bp.join("bin/release"),
        "#!/bin/bash\nprintf -- '---\\ndefault_process_types:\\n  web: python3 e2e-serve.py\\n'\n",
    );

    let out = platform.cli(&[
        "create-buildpack",
        "e2e-bp",
        bp.to_str().expect("utf-8"),
        "1",
    ]);
    assert!(
        out.contains("Creating buildpack e2e-bp") && out.contains("Processing uploaded buildpack"),
        "{out}"
    );

    // `buildpacks` lists it first, ready, with the uploaded file's name.
    let table = platform.cli(&["buildpacks"]);
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("position"))
        .skip(1)
        .collect();
    let first: Vec<&str> = rows
        .first()
        .expect("a buildpack row")
        .split_whitespace()
        .collect();
    assert_eq!(first.first().copied(), Some("1"), "{table}");
    assert_eq!(first.get(1).copied(), Some("e2e-bp"), "{table}");
    assert!(
        first.contains(&"ready") && first.contains(&"e2e-buildpack.zip"),
        "{table}"
    );
    let entry = listed(platform, "e2e-bp").expect("e2e-bp in buildpacks --json");
    assert_eq!(entry["position"], 1, "{entry}");
    assert_eq!(entry["enabled"], true, "{entry}");
    assert_eq!(entry["locked"], false, "{entry}");

    // The same name again: the API's refusal reaches the user.
    let err = platform.cli_fails(&[
        "create-buildpack",
        "e2e-bp",
        bp.to_str().expect("utf-8"),
        "1",
    ]);
    assert!(err.contains("already exists"), "{err}");

    // An app that names no buildpack: detection asks e2e-bp first.
    let app = work.join("e2e-bp-app");
    std::fs::create_dir_all(&app).expect("app dir");
    std::fs::write(app.join("e2e-bp-marker.txt"), "detected by position\n").expect("marker");
    platform.cli(&["push", "bpdetect", "-p", app.to_str().expect("utf-8")]);
    let body = platform.wait_for_app("bpdetect.apps.localhost", "/");
    assert_eq!(body, "detected by position via e2e-bp");

    platform.cli(&["update-buildpack", "e2e-bp", "--disable"]);
    let table = platform.cli(&["buildpacks"]);
    assert!(table.contains("e2e-bp"), "{table}");
    let entry = listed(platform, "e2e-bp").expect("still listed");
    assert_eq!(entry["enabled"], false, "{entry}");

    let out = platform.cli(&["delete-buildpack", "e2e-bp", "-f"]);
    assert!(out.contains("OK"), "{out}");
    assert!(
        listed(platform, "e2e-bp").is_none(),
        "e2e-bp is still listed"
    );
    platform.cli(&["delete", "bpdetect", "-f"]);
}
