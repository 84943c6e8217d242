//! A webhook receiver: a tiny HTTP/1.1 server on loopback that keeps every JSON body it
//! receives and answers as told (at once, failing at first, or never).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 200 at once.
    Ok,
    /// 500 for the first `n` requests, then 200.
    FailFirst(usize),
    /// Reads the request and never answers.
    Hang,
}

/// A running receiver (a task on the current tokio runtime).
#[derive(Clone, Debug)]
pub struct Hook {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    /// Every request body received (also the ones answered 500), with when.
    seen: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
    /// Connections accepted.
    connections: Arc<Mutex<usize>>,
}

impl Hook {
    /// Binds 127.0.0.1 on a free port and serves until the runtime ends.
    pub async fn start(answer: Answer) -> Self {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the webhook receiver");
        let url = format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                *c.lock().unwrap() += 1;
                tokio::spawn(serve(sock, s.clone(), answer));
            }
        });
        Self {
            url,
            seen,
            connections,
        }
    }

    /// The bodies received so far, in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Waits up to `timeout` for a notice with `event` whose `field` is `value`
    /// (e.g. `"request_id"`, `"grant_id"`), and returns it; panics when none came.
    pub async fn wait_for(
        &self,
        event: &str,
        field: &str,
        value: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .events()
                .into_iter()
                .find(|v| v["event"] == event && v[field] == value)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} notice for {value} within {timeout:?}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Hook {
    /// Waits up to `timeout` for a body that `pred` accepts (any format: the Slack body
    /// has no `event` field), and returns it; panics when none came.
    pub async fn wait_body(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no body {what} within {timeout:?}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One connection: headers, then Content-Length bytes of body; the answer.
async fn serve(
    mut sock: TcpStream,
    seen: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
    answer: Answer,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, len) = loop {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (p + 4, len);
        }
    };
    while buf.len() < head_end + len {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(serde_json::Value::Null);
    let count = {
        let mut v = seen.lock().unwrap();
        v.push((Instant::now(), body));
        v.len()
    };
    let status = match answer {
        Answer::Ok => "200 OK",
        Answer::FailFirst(n) if count <= n => "500 Internal Server Error",
        Answer::FailFirst(_) => "200 OK",
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let _ = sock
        .write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}
