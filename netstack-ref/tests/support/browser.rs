//! A headless Chromium driven over WebDriver: Debian's `chromium` and `chromedriver`
//! (package `chromium-driver`), the driver a child process killed on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ebpf_test_support::eventually;

/// A running chromedriver, stopped on drop.
pub struct ChromeDriver {
    child: Child,
    /// Its WebDriver URL.
    pub url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port; panics (naming the package) when it is missing.
    pub fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the browsers it starts go with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver (apt-get install chromium chromium-driver): {e}"));
        let driver = ChromeDriver { child, url: format!("http://127.0.0.1:{port}") };
        let up = eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "chromedriver listens on {port}");
        driver
    }

    /// The capabilities of a headless Chromium with a fixed window.
    pub fn headless() -> serde_json::Map<String, serde_json::Value> {
        let options = serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--hide-scrollbars"],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
