//! End-to-end tests with a real nginx in front of the vassal (`uwsgi_pass unix:`), and
//! real Flask and Django apps in the test virtualenv (EMPEROR_TEST_VENV).

use std::path::{Path, PathBuf};
use std::time::Duration;

use emperor_e2e::http::{self, Conn};
use emperor_e2e::nginx::Nginx;
use emperor_e2e::{apps_dir, http_vassal, venv, TempDir, Vassal, VassalBuilder};

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Checks that the app's /venv report shows it runs inside the test venv.
fn assert_runs_in_venv(v: &Vassal, r: &http::Response) {
    if r.status != 200 {
        v.fail(&format!("GET /venv: {}", r.summary()));
    }
    let doc = r.json();
    let venv = canon(&venv());
    let prefix = canon(Path::new(doc["prefix"].as_str().unwrap_or("")));
    let flask = Path::new(doc["flask"].as_str().unwrap_or(""));
    if prefix != venv || !canon(flask).starts_with(&venv) {
        v.fail(&format!(
            "the app must run in the venv {}: sys.prefix={prefix:?}, flask from {flask:?}",
            venv.display()
        ));
    }
}

fn check_flask_routes(v: &Vassal, addr: &http::Addr) {
    let r = http::get(addr, "/");
    if r.status != 200 || r.body != b"Hello from Flask" {
        v.fail(&format!("Flask GET /: {}", r.summary()));
    }
    let r = http::get(addr, "/hello/n%C3%BCrnberg");
    if r.status != 200 || r.text() != "Hello, nürnberg!" {
        v.fail(&format!("Flask GET /hello/<name>: {}", r.summary()));
    }
    let body = br#"{"x": [1, 2, 3], "s": "caf\u00e9"}"#;
    let r = http::request(
        addr,
        "POST",
        "/echo",
        &[("Content-Type", "application/json")],
        body,
    );
    let want = serde_json::json!({"received": {"x": [1, 2, 3], "s": "café"}, "length": body.len()});
    if r.status != 200 || r.json() != want {
        v.fail(&format!(
            "Flask POST /echo: expected {want}, got {}",
            r.summary()
        ));
    }
    let r = http::get(addr, "/missing");
    if r.status != 404 {
        v.fail(&format!("Flask 404: {}", r.summary()));
    }
}

#[test]
fn flask_behind_nginx_in_a_venv_via_home() {
    let tmp = TempDir::new("flask");
    let sock = tmp.join("flask.sock");
    let ini = tmp.write(
        "flask.ini",
        format!(
            "[uwsgi]\nchdir = {}\nmodule = app:app\nhome = {}\nmaster = true\nprocesses = 2\nsocket = {}\nchmod-socket = 660\nvacuum = true\ndie-on-term = true\n",
            apps_dir().join("flaskapp").display(),
            venv().display(),
            sock.display()
        ),
    );
    let mut v = VassalBuilder::new()
        .arg("--ini")
        .arg(&ini)
        .cwd(tmp.path())
        .spawn_ready();
    let nginx = Nginx::start(&sock);
    check_flask_routes(&v, &nginx.addr());
    assert_runs_in_venv(&v, &http::get(&nginx.addr(), "/venv"));
    let st = v.terminate();
    assert!(st.success(), "{}", v.log());
}

#[test]
fn flask_in_an_activated_venv_without_home() {
    // `source venv/bin/activate` sets VIRTUAL_ENV and PATH; no home = in the config.
    let tmp = TempDir::new("flaskve");
    let venv = venv();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sock = tmp.join("http.sock");
    let v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join("flaskapp/app.py"))
        .args(["--callable", "app"])
        .env("VIRTUAL_ENV", &venv)
        .env("PATH", path)
        .cwd(tmp.path())
        .spawn_ready();
    let addr = http::Addr::Unix(sock);
    check_flask_routes(&v, &addr);
    assert_runs_in_venv(&v, &http::get(&addr, "/venv"));
}

#[test]
fn django_project_behind_nginx() {
    let tmp = TempDir::new("django");
    let venv = venv();
    let proj = tmp.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let out = std::process::Command::new(venv.join("bin/django-admin"))
        .args(["startproject", "mysite"])
        .arg(&proj)
        .output()
        .expect("run django-admin from the venv");
    assert!(
        out.status.success(),
        "django-admin startproject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A view of our own, with a POST body.
    let urls = proj.join("mysite/urls.py");
    let mut text = std::fs::read_to_string(&urls).unwrap();
    text.push_str(
        "\nfrom django.http import HttpResponse\nfrom django.views.decorators.csrf import csrf_exempt\n\n\n\
         @csrf_exempt\ndef e2e_echo(request):\n    return HttpResponse(f\"{request.method} {len(request.body)} {request.GET.get('q', '')}\")\n\n\n\
         urlpatterns.append(path(\"e2e/echo/\", e2e_echo))\n",
    );
    std::fs::write(&urls, text).unwrap();

    let sock = tmp.join("django.sock");
    let ini = tmp.write(
        "mysite.ini",
        format!(
            "[uwsgi]\nchdir = {}\nmodule = mysite.wsgi:application\nhome = {}\nmaster = true\nprocesses = 2\nsocket = {}\nvacuum = true\n",
            proj.display(),
            venv.display(),
            sock.display()
        ),
    );
    let mut v = VassalBuilder::new()
        .arg("--ini")
        .arg(&ini)
        .cwd(tmp.path())
        .spawn_ready();
    let nginx = Nginx::start(&sock);
    let addr = nginx.addr();

    // With a URL of our own added, "/" is Django's DEBUG 404 page (the "install worked"
    // page only appears for an untouched urls.py).
    let r = http::get(&addr, "/");
    if r.status != 404 || !r.text().contains("Page not found") || !r.text().contains("e2e/echo/") {
        v.fail(&format!(
            "Django DEBUG 404 page listing our URL patterns: {}\n{}",
            r.summary(),
            nginx.logs()
        ));
    }
    let r = http::get(&addr, "/admin/login/");
    if r.status != 200 || !r.text().contains("csrfmiddlewaretoken") {
        v.fail(&format!("Django /admin/login/: {}", r.summary()));
    }
    if r.headers_all("set-cookie")
        .iter()
        .all(|c| !c.starts_with("csrftoken="))
    {
        v.fail(&format!(
            "Django /admin/login/ sets the csrftoken cookie: {}",
            r.summary()
        ));
    }
    let r = http::request(
        &addr,
        "POST",
        "/e2e/echo/?q=z",
        &[("Content-Type", "text/plain")],
        &[b'p'; 12345],
    );
    if r.status != 200 || r.text() != "POST 12345 z" {
        v.fail(&format!("Django POST view: {}", r.summary()));
    }
    let r = http::get(&addr, "/nope/");
    if r.status != 404 {
        v.fail(&format!("Django 404: {}", r.summary()));
    }
    let st = v.terminate();
    assert!(st.success(), "{}", v.log());
}

#[test]
fn nginx_uwsgi_params_reach_the_app() {
    let tmp = TempDir::new("params");
    let (v, sock) = emperor_e2e::uwsgi_vassal(&tmp, "echo.py", &[]);
    let nginx = Nginx::start(&sock);
    let r = http::request(
        &nginx.addr(),
        "POST",
        "/p%20q/r?a=1&b=%2F",
        &[("X-Hello", "world"), ("Cookie", "k=v")],
        b"payload",
    );
    if r.status != 200 {
        v.fail(&format!(
            "echo through nginx: {}\n{}",
            r.summary(),
            nginx.logs()
        ));
    }
    let doc = r.json();
    let env = &doc["environ"];
    for (k, want) in [
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/p q/r"),
        ("QUERY_STRING", "a=1&b=%2F"),
        ("REQUEST_URI", "/p%20q/r?a=1&b=%2F"),
        ("CONTENT_LENGTH", "7"),
        ("HTTP_X_HELLO", "world"),
        ("HTTP_COOKIE", "k=v"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("wsgi.url_scheme", "http"),
    ] {
        if env[k].as_str() != Some(want) {
            v.fail(&format!(
                "through nginx, environ[{k:?}]: expected {want:?}, got {:?}\n{env:#}",
                env[k]
            ));
        }
    }
    assert_eq!(doc["body_b64"], "cGF5bG9hZA==");
    // Set-Cookie headers survive nginx too.
    drop(nginx);
    let tmp2 = TempDir::new("paramsc");
    let (v2, sock2) = emperor_e2e::uwsgi_vassal(&tmp2, "features.py", &[]);
    let nginx = Nginx::start(&sock2);
    let r = http::get(&nginx.addr(), "/cookies");
    if r.headers_all("set-cookie").len() != 3 {
        v2.fail(&format!(
            "three Set-Cookie headers through nginx: {}",
            r.summary()
        ));
    }
    // An app exception before start_response: our 500, not nginx's 502.
    let r = http::get(&nginx.addr(), "/raise_before");
    if r.status != 500 {
        v2.fail(&format!(
            "exception before start_response through nginx: expected 500 (uWSGI gives 502), got {}",
            r.summary()
        ));
    }
}

const MIB: u64 = 1024 * 1024;
const TRANSFER: usize = 20 * 1024 * 1024;
/// How much the vassal tree's peak RSS may grow while moving 20 MiB each way. Buffering a
/// whole body would cost at least 20 MiB (more with Python copies).
const MAX_GROWTH_KIB: u64 = 10 * 1024;

#[test]
fn twenty_mib_upload_and_download_through_nginx_in_bounded_memory() {
    let tmp = TempDir::new("big");
    let (v, sock) =
        emperor_e2e::uwsgi_vassal(&tmp, "features.py", &["--master", "--processes", "1"]);
    let nginx = Nginx::start(&sock);
    let addr = nginx.addr();
    // Warm up: the first request touches code paths and allocator arenas.
    for _ in 0..3 {
        let r = http::request(&addr, "POST", "/upload", &[], &[b'w'; 200_000]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            http::get(&addr, "/download?bytes=200000").body.len(),
            200_000
        );
    }
    let (rss0, hwm0) = v.tree_mem_kib();

    let data: Vec<u8> = (0..TRANSFER as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = http::request(
        &addr,
        "POST",
        "/upload",
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    let want = serde_json::json!({"bytes": TRANSFER, "sha256": emperor_e2e::sha256_hex(&data)});
    if r.status != 200 || r.json() != want {
        v.fail(&format!(
            "20 MiB upload through nginx: expected {want}, got {}\n{}",
            r.summary(),
            nginx.logs()
        ));
    }
    drop(data);
    let (rss1, hwm1) = v.tree_mem_kib();

    let mut c = Conn::connect(&addr).unwrap();
    let r = c
        .request(
            "GET",
            &format!("/download?bytes={TRANSFER}"),
            &[("Connection", "close")],
            b"",
        )
        .unwrap();
    if r.status != 200 || r.body.len() != TRANSFER {
        v.fail(&format!(
            "20 MiB download through nginx: got {} bytes, {}\n{}",
            r.body.len(),
            r.summary(),
            nginx.logs()
        ));
    }
    let pattern_ok = r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 256) as u8);
    assert!(
        pattern_ok,
        "the downloaded bytes differ from what the app generated"
    );
    let (rss2, hwm2) = v.tree_mem_kib();

    eprintln!(
        "vassal tree memory (KiB): idle rss {rss0} hwm {hwm0}; after upload rss {rss1} hwm {hwm1}; after download rss {rss2} hwm {hwm2}"
    );
    let grow_up = hwm1.saturating_sub(hwm0);
    let grow_down = hwm2.saturating_sub(hwm1);
    if grow_up > MAX_GROWTH_KIB || grow_down > MAX_GROWTH_KIB {
        v.fail(&format!(
            "memory must stay bounded while streaming 20 MiB: peak RSS grew {} MiB on upload and {} MiB on download (limit {} MiB)",
            grow_up / 1024,
            grow_down / 1024,
            MAX_GROWTH_KIB * 1024 / MIB
        ));
    }
}

#[test]
fn twenty_mib_download_over_http_socket_in_bounded_memory() {
    let tmp = TempDir::new("bigh");
    let (v, addr) = http_vassal(&tmp, "features.py", &["--processes", "1"]);
    assert_eq!(
        http::get(&addr, "/download?bytes=200000").body.len(),
        200_000
    );
    let (_, hwm0) = v.tree_mem_kib();
    // The test reads slowly-ish (whole body into memory, but the vassal must not buffer it).
    let r = http::get(&addr, &format!("/download?bytes={TRANSFER}&cl=1"));
    assert_eq!(r.body.len(), TRANSFER);
    let data: Vec<u8> = (0..TRANSFER as u32).map(|i| (i >> 7) as u8).collect();
    let r2 = http::request(&addr, "POST", "/upload", &[], &data);
    assert_eq!(r2.json()["bytes"], TRANSFER);
    let (_, hwm1) = v.tree_mem_kib();
    if hwm1.saturating_sub(hwm0) > MAX_GROWTH_KIB {
        v.fail(&format!(
            "HTTP socket: peak RSS grew {} KiB moving 20 MiB each way (limit {MAX_GROWTH_KIB} KiB)",
            hwm1 - hwm0
        ));
    }
}

#[test]
fn oversized_request_headers_through_nginx_get_the_vassal_error_not_a_502() {
    // nginx packs the 5 KB header into a vars block larger than the default buffer-size
    // (4096). uWSGI closes silently and nginx answers 502; the vassal answers an error
    // that names the problem, and nginx must be able to relay it.
    let tmp = TempDir::new("bigh");
    let (v, sock) = emperor_e2e::uwsgi_vassal(&tmp, "echo.py", &[]);
    let nginx = Nginx::start(&sock);
    let big = "b".repeat(5000);
    let r = http::request(&nginx.addr(), "GET", "/", &[("X-Big", &big)], b"");
    if !(400..500).contains(&r.status) || r.body.is_empty() {
        v.fail(&format!(
            "expected the vassal's 4xx error relayed by nginx, got {}\n{}",
            r.summary(),
            nginx.logs()
        ));
    }
    v.wait_log("buffer-size", Duration::from_secs(5));
    let r = http::get(&nginx.addr(), "/small");
    assert_eq!(r.status, 200, "{}", r.summary());
}

#[test]
fn flask_with_the_home_flag() {
    let tmp = TempDir::new("flaskhf");
    let (v, addr) = http_vassal(
        &tmp,
        "flaskapp/app.py",
        &[
            "--callable",
            "app",
            "--home",
            venv().to_str().expect("utf-8 venv path"),
        ],
    );
    check_flask_routes(&v, &addr);
    assert_runs_in_venv(&v, &http::get(&addr, "/venv"));
}
