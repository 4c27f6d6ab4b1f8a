//! Headless Chromium driven over the DevTools protocol, for pages a phone shows.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

/// A running Chromium and a DevTools session on its page.
pub struct Chromium {
    pub child: tokio::process::Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts headless Chromium with a window of `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium must be installed (apt-get install chromium)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        let port: u16 = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(l) = lines.next_line().await.unwrap() {
                if let Some(rest) = l.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                    return rest.split('/').next().unwrap().parse().unwrap();
                }
            }
            panic!("Chromium exited without a DevTools port");
        })
        .await
        .expect("Chromium did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let devtools: SocketAddr = ([127, 0, 0, 1], port).into();
        let targets: Value =
            serde_json::from_str(&devtools_get(devtools, "/json/list").await).unwrap();
        let page_ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(page_ws.clone())
            .await
            .unwrap_or_else(|e| panic!("{page_ws}: {e}"));
        Chromium {
            child,
            ws,
            next: 0,
            _profile: profile,
        }
    }

    /// One DevTools call; its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                msg.to_string().into(),
            ))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("Chromium did not answer")
                .unwrap()
                .unwrap();
            if let Ok(text) = m.to_text() {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluates an expression whose value is a promise; what it resolves to.
    pub async fn eval_async(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expr` every 100 ms for up to `secs` until it is truthy; its last value.
    pub async fn wait(&mut self, secs: u64, expr: &str) -> Value {
        let until = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.eval(expr).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy || std::time::Instant::now() > until {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` and waits for the document to be complete.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait(30, "document.readyState === 'complete' && location.href")
            .await;
    }

    /// Shows pages at exactly `width` × `height` CSS pixels.
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// The browser's preferred languages (`navigator.languages`, Accept-Language).
    pub async fn languages(&mut self, accept: &str) {
        let version = self.call("Browser.getVersion", json!({})).await;
        let agent = version["userAgent"].as_str().unwrap_or_default().to_owned();
        self.call(
            "Emulation.setUserAgentOverride",
            json!({"userAgent": agent, "acceptLanguage": accept}),
        )
        .await;
    }

    /// `prefers-color-scheme: dark` (or light).
    pub async fn dark(&mut self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        )
        .await;
    }

    /// A PNG of the page as shown.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

/// GET from Chromium's DevTools HTTP endpoint, which keeps the connection open: read by length.
async fn devtools_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    s.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}
