//! `catdog serve` over real HTTP on loopback: every endpoint, multipart, bad inputs (each a
//! JSON error with a 4xx status while the server keeps serving), the full queue's 503 and a
//! graceful shutdown with a request in flight. Each server is killed when its test ends.
#![cfg(unix)]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use catdog::data::synth::synth_image;
use common::{assert_ok, catdog, command, train_tiny};

/// A running `catdog serve`, stopped (SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--model", "run", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = command(&args, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("catdog serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.trim().trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        Server { child, addr }
    }

    /// SIGTERM, then the exit status within `secs`.
    fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        common::wait_within(&mut self.child, Duration::from_secs(secs))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 answer.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body`, reads the
/// answer to the end (the request says `Connection: close`).
fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    // A server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    read_answer(s)
}

fn read_answer(mut s: TcpStream) -> Answer {
    let mut raw = Vec::new();
    // To the end, or to a reset after the answer (a server closing on a body it refused).
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Answer { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 2 + n + 2..];
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, &format!("GET {path} HTTP/1.1"), b"")
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Answer {
    send(
        addr,
        &format!("POST {path} HTTP/1.1\r\nContent-Type: application/octet-stream"),
        body,
    )
}

/// `POST /predictions` of `files` (name, bytes) as one `multipart/form-data` body.
fn post_multipart(addr: SocketAddr, files: &[(&str, Vec<u8>)]) -> Answer {
    let boundary = "catdogboundary";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    send(
        addr,
        &format!(
            "POST /predictions HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
        ),
        &body,
    )
}

fn png(class: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    synth_image(class, 40, seed)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// A trained tiny model in `dir/run` and a photo of each class in `dir`.
fn model(dir: &Path) {
    common::cat_and_dog_folders(dir, 8, 2);
    assert_ok(&train_tiny(dir, "data", "run", "cnn"));
    std::fs::write(dir.join("cat.png"), png(0, 11)).unwrap();
    std::fs::write(dir.join("dog.png"), png(1, 12)).unwrap();
}

fn assert_error(a: &Answer, status: u16, kind: &str) {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["kind"], kind, "{}", a.json());
    assert!(a.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[test]
fn every_endpoint_answers_and_predictions_match_catdog_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model(dir);
    let server = Server::start(dir, &[]);
    let addr = server.addr;
    assert!(addr.ip().is_loopback(), "loopback by default: {addr}");

    assert_eq!(get(addr, "/ping").json()["status"], "Healthy");
    let card = get(addr, "/model").json();
    assert_eq!(card["classes"], serde_json::json!(["Cat", "Dog"]));
    assert_eq!(card["image_size"], 16);
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<html") && html.contains("predictions"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    // One image as the body: the same logits as `catdog predict --json`.
    let a = post(
        addr,
        "/predictions",
        &std::fs::read(dir.join("cat.png")).unwrap(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let served = a.json();
    let o = catdog(&["predict", "--model", "run", "--json", "cat.png"], dir);
    assert_ok(&o);
    let predicted: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(served["class"], predicted[0]["predicted"]);
    for (i, class) in ["Cat", "Dog"].iter().enumerate() {
        let l = served["logits"][class].as_f64().unwrap();
        let p = predicted[0]["logits"][i].as_f64().unwrap();
        assert!((l - p).abs() < 1e-4, "{class}: {l} vs {p}");
    }
    let total: f64 = ["Cat", "Dog"]
        .iter()
        .map(|c| served["probabilities"][c].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-5);
    // TorchServe's path, and flip TTA.
    let a = post(addr, "/predictions/run?tta=1", &png(1, 3));
    assert_eq!(a.status, 200);
    assert!(a.json()["class"].is_string());
    // Both default to flip TTA and say so; `?tta=0` is one forward pass, as `--no-tta`, and
    // other logits than the default's.
    let said = catdog(&["predict", "--model", "run", "cat.png"], dir);
    assert!(String::from_utf8_lossy(&said.stderr).contains("flip TTA"));
    let one = post(
        addr,
        "/predictions?tta=0",
        &std::fs::read(dir.join("cat.png")).unwrap(),
    );
    assert_eq!(one.status, 200);
    assert_eq!(
        (served["tta"].as_bool(), one.json()["tta"].as_bool()),
        (Some(true), Some(false))
    );
    let o = catdog(
        &["predict", "--model", "run", "--json", "--no-tta", "cat.png"],
        dir,
    );
    assert_ok(&o);
    let predicted_once: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut differs = false;
    for (i, class) in ["Cat", "Dog"].iter().enumerate() {
        let l = one.json()["logits"][class].as_f64().unwrap();
        let p = predicted_once[0]["logits"][i].as_f64().unwrap();
        assert!((l - p).abs() < 1e-4, "tta=0, {class}: {l} vs {p}");
        differs |= (l - served["logits"][class].as_f64().unwrap()).abs() > 1e-6;
    }
    assert!(differs, "the default should be flip TTA, not one pass");

    // Several photos as multipart, one of them not an image: an answer per part, in order.
    let a = post_multipart(
        addr,
        &[
            ("a.png", png(0, 1)),
            ("notes.txt", b"not an image".to_vec()),
            ("b.png", png(1, 2)),
        ],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let parts = a.json();
    let parts = parts.as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["filename"], "a.png");
    assert!(parts[0]["class"].is_string() && parts[2]["class"].is_string());
    assert_eq!(parts[1]["kind"], "not_an_image");

    // A multipart body over axum's own 2 MB default but within the server's 20 MB limit.
    let a = post_multipart(
        addr,
        &[("filler.bin", vec![7u8; 3 << 20]), ("c.png", png(0, 4))],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let parts = a.json();
    assert_eq!(parts[0]["kind"], "not_an_image");
    assert!(parts[1]["class"].is_string(), "{parts}");

    assert_error(&get(addr, "/nowhere"), 404, "not_found");
    let metrics = String::from_utf8_lossy(&get(addr, "/metrics").body).into_owned();
    assert!(
        metrics.contains("catdog_requests_total{endpoint=\"predictions\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("catdog_errors_total{kind=\"not_an_image\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("catdog_batch_images_count"), "{metrics}");
    assert!(
        metrics.contains("catdog_request_seconds_bucket{le=\"+Inf\"} "),
        "{metrics}"
    );
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model(dir);
    let server = Server::start(dir, &["--max-body-mb", "1", "--read-timeout-s", "1"]);
    let addr = server.addr;
    let good = png(0, 5);

    assert_error(
        &post(addr, "/predictions", b"not an image"),
        400,
        "not_an_image",
    );
    assert_error(
        &post(addr, "/predictions", &good[..good.len() / 2]),
        400,
        "not_an_image",
    );
    assert_error(&post(addr, "/predictions", b""), 400, "bad_request");
    assert_error(
        &post(addr, "/predictions?tta=maybe", &good),
        400,
        "bad_request",
    );
    // A PNG whose header claims 60,000 x 60,000 pixels: refused from its header.
    let bomb = common::png_claiming(&good, (60_000, 60_000));
    assert_error(&post(addr, "/predictions", &bomb), 400, "not_an_image");
    // Over the 1 MB limit, declared up front: refused before the body is read.
    let mut big = TcpStream::connect(addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /predictions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        2 << 20
    );
    big.write_all(head.as_bytes()).unwrap();
    assert_error(&read_answer(big), 413, "body_too_large");
    // Over the limit without a declared length (chunked): refused once 1 MB has arrived.
    let mut chunked = TcpStream::connect(addr).unwrap();
    chunked
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /predictions HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    chunked.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..17 {
        let sent = chunked
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| chunked.write_all(&chunk))
            .and_then(|()| chunked.write_all(b"\r\n"));
        if sent.is_err() {
            break;
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n");
    assert_error(&read_answer(chunked), 413, "body_too_large");
    // A slow client: 10 of 100 announced bytes, then silence past the read timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(
        format!("POST /predictions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789").as_bytes(),
    )
    .unwrap();
    assert_error(&read_answer(slow), 408, "timeout");
    // A client that disconnects mid-body, a thousand idle connections and one that stops in
    // the middle of its request head.
    let mut gone = TcpStream::connect(addr).unwrap();
    gone.write_all(b"POST /predictions HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc")
        .unwrap();
    drop(gone);
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut half_head = TcpStream::connect(addr).unwrap();
    half_head
        .write_all(b"POST /predictions HTTP/1.1\r\nHost: x")
        .unwrap();
    idle.push(half_head);
    // Still serving, while they are open.
    let a = post(addr, "/predictions", &good);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // Each is closed by the server once its head is a read timeout (1 s) late: read returns
    // end-of-file (or a reset), not our 30 s client timeout.
    let started = std::time::Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut byte = [0u8; 1];
        match c.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "idle connections closed after {waited:?}"
    );
    assert_eq!(get(addr, "/ping").status, 200);
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model(dir);
    let server = Server::start(
        dir,
        &["--queue", "1", "--max-batch", "1", "--max-wait-ms", "0"],
    );
    let addr = server.addr;
    // A large photo keeps the worker busy while 32 clients each send one.
    let mut big = Vec::new();
    image::imageops::resize(
        &synth_image(0, 40, 1),
        1600,
        1200,
        image::imageops::FilterType::Nearest,
    )
    .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
    .unwrap();
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| s.spawn(|| post(addr, "/predictions", &big)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(!busy.is_empty(), "a queue of 1 refused none of 32");
    for a in &busy {
        assert_eq!(a.json()["kind"], "queue_full");
        assert!(
            a.head.to_ascii_lowercase().contains("retry-after: 1"),
            "{}",
            a.head
        );
    }
    assert!(
        answers.iter().all(|a| a.status == 200 || a.status == 503),
        "only answers and 503s"
    );
    assert!(answers.iter().any(|a| a.status == 200));
}

#[test]
fn bodies_beyond_the_memory_budget_get_503_until_it_frees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model(dir);
    // 2 MB of bodies at once, all requests together; bodies up to 1 MB each.
    let server = Server::start(
        dir,
        &[
            "--max-inflight-mb",
            "2",
            "--max-body-mb",
            "1",
            "--read-timeout-s",
            "5",
        ],
    );
    let addr = server.addr;
    let good = png(0, 3);
    // Two slow clients each announce 900 kB and send 10 bytes: 1.8 MB of the budget held.
    let head = format!(
        "POST /predictions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 900000\r\nConnection: close\r\n\r\n0123456789"
    );
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third announcing 900 kB does not fit in what is left: 503, before its body is read.
    let head = format!(
        "POST /predictions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 900000\r\nConnection: close\r\n\r\n"
    );
    let a = send(addr, &head, &vec![0u8; 900_000]);
    assert_error(&a, 503, "queue_full");
    // A small photo still fits (its declared size, not the largest body, is reserved).
    assert_eq!(post(addr, "/predictions", &good).status, 200);
    // Once the holders time out (408) their share is free again.
    for c in holders {
        assert_error(&read_answer(c), 408, "timeout");
    }
    let a = send(addr, &head, &vec![0u8; 900_000]);
    assert_error(&a, 400, "not_an_image");
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model(dir);
    let mut server = Server::start(dir, &[]);
    let addr = server.addr;
    let good = png(1, 9);
    // Half a request is on its way when the server is told to stop.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /predictions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        good.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&good[..good.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&good[good.len() / 2..]).unwrap();
    let a = read_answer(s);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["class"].is_string());
    let status = server
        .terminate(20)
        .expect("the server exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    // No new connections after it stopped.
    assert!(TcpStream::connect(addr).is_err());
}
