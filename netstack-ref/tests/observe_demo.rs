//! The demo's traffic, observed: one node with the demo's pods and policies runs every
//! connection of the demo's table; each appears as flows with the right pods, identities,
//! ports, verdicts and drop reasons; `/metrics` counts them in Hubble's families and passes
//! `promtool check metrics`; and the service map page, loaded in a headless Chromium, draws
//! the demo's edges in their verdicts' colours, filters by namespace and lists an edge's
//! flows when it is clicked.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ebpf_test_support::{eventually, require_executable, require_kernel};
use fantoccini::{ClientBuilder, Locator};
use netstack_ref::demo::{BACKEND_SERVICE, CONNECTIONS, MANIFESTS, SERVICE_CONNECTIONS};
use netstack_ref::policy::AllowLocalhost;
use netstack_ref::traffic::probe::{self, Probe};
use serde_json::Value;
use support::browser::ChromeDriver;
use support::cluster::netstack;
use support::{http_get, Node, PodAt};

/// A connection the demo makes: from, to (pod), the address connected to, the probe, whether
/// it passes.
struct Connection {
    from: &'static str,
    to: &'static str,
    address: std::net::Ipv4Addr,
    probe: Probe,
    passes: bool,
}

fn demo_connections(pods: &BTreeMap<String, PodAt>) -> Vec<Connection> {
    let direct = CONNECTIONS.iter().map(|&(from, to, probe, passes, _)| Connection {
        from,
        to,
        address: pods[to].ip,
        probe,
        passes,
    });
    let through_service = SERVICE_CONNECTIONS.iter().map(|&(from, probe, passes, _)| Connection {
        from,
        to: "shop/backend",
        address: BACKEND_SERVICE.1,
        probe,
        passes,
    });
    direct.chain(through_service).collect()
}

/// `netstack observe --last 4095 -o json` on the node: every flow it kept.
fn all_flows(node: &Node) -> Vec<Value> {
    let state = node.config.state_dir.to_str().unwrap();
    let out = netstack(&["observe", "--state-dir", state, "--last", "4095", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["flow"].clone())
        .collect()
}

fn pod_name(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap()
}

/// Whether `flow` runs from pod `from` to pod `to` with `probe`'s protocol and port.
fn is_connection(flow: &Value, c: &Connection) -> bool {
    let side = |side: &str, key: &str| {
        let (namespace, name) = pod_name(key);
        flow[side]["namespace"] == namespace && flow[side]["pod_name"] == name
    };
    let l4 = &flow["l4"];
    let protocol_matches = match c.probe {
        Probe::Tcp(port) => l4["TCP"]["destination_port"] == port,
        Probe::Udp(port) => l4["UDP"]["destination_port"] == port,
        Probe::Icmp | Probe::IcmpId(_) => l4["ICMPv4"]["type"] == 8,
        Probe::TcpService { target_port, .. } => l4["TCP"]["destination_port"] == target_port,
    };
    side("source", c.from) && side("destination", c.to) && protocol_matches && flow["is_reply"] != true
}

#[test]
fn the_demos_traffic_as_flows_metrics_and_the_service_map() {
    let Some(_root) = require_kernel() else { return };
    let mut node = Node::new("nobd", AllowLocalhost::Always, &MANIFESTS);
    node.start_with(&["--http".as_ref(), "127.0.0.1:0".as_ref()]);
    let pods = node.pods(4);
    let connections = demo_connections(&pods);
    for c in &connections {
        let outcome =
            probe::run(&pods[c.from].netns, &pods[c.to].netns, c.address, c.probe, Duration::from_millis(700));
        assert_eq!(outcome.passed(), c.passes, "{} → {} {}: {outcome:?}", c.from, c.to, c.probe);
    }
    let identities: BTreeMap<String, u64> =
        netstack_ref::agent::api::call(&node.config.socket(), &netstack_ref::agent::api::Request::EndpointList)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["pod"].as_str().unwrap().to_owned(), e["identity"].as_u64().unwrap()))
            .collect();

    // Every connection of the demo is a flow with its verdict (and, dropped, its reason).
    let settled = || {
        let flows = all_flows(&node);
        connections.iter().all(|c| flows.iter().any(|f| is_connection(f, c) && f["event_type"]["type"] == 5))
    };
    assert!(eventually(Duration::from_secs(5), settled), "a policy verdict for each connection");
    let flows = all_flows(&node);
    for c in &connections {
        let of_connection: Vec<&Value> = flows.iter().filter(|f| is_connection(f, c)).collect();
        let verdicts: Vec<&Value> = of_connection.iter().copied().filter(|f| f["event_type"]["type"] == 5).collect();
        // Allowed: every verdict on the way forwards. Denied: one of them (the source's egress
        // or the destination's ingress) drops.
        let decided = if c.passes {
            verdicts.iter().all(|f| f["verdict"] == "FORWARDED")
        } else {
            verdicts.iter().any(|f| f["verdict"] == "DROPPED")
        };
        assert!(decided, "{} → {} {}: policy verdicts {verdicts:?}", c.from, c.to, c.probe);
        let verdict = verdicts[0];
        assert_eq!(verdict["source"]["identity"], identities[c.from], "{verdict}");
        assert_eq!(verdict["destination"]["identity"], identities[c.to], "{verdict}");
        assert_eq!(verdict["IP"]["destination"], pods[c.to].ip.to_string(), "after the socket LB, the backend");
        if !c.passes {
            let drop = of_connection
                .iter()
                .find(|f| f["event_type"]["type"] == 1)
                .unwrap_or_else(|| panic!("{} → {} {}: a drop event", c.from, c.to, c.probe));
            let reason = drop["drop_reason_desc"].as_str().unwrap();
            // The CCNP's deny rule wins over its allow rule: Cilium's "denied by denylist".
            let want = if c.from == "ops/monitor" && c.to == "shop/db" { "POLICY_DENY" } else { "POLICY_DENIED" };
            assert_eq!(reason, want, "{} → {} {}", c.from, c.to, c.probe);
        }
    }

    // Connections to the backend's service are translated at the socket: a SOCK flow from the
    // client's pod to the backend it was given, naming the service.
    for c in connections.iter().filter(|c| c.address == BACKEND_SERVICE.1) {
        let translated = flows
            .iter()
            .find(|f| f["Type"] == "SOCK" && f["source"]["pod_name"] == pod_name(c.from).1)
            .unwrap_or_else(|| panic!("{} → service: a socket translation", c.from));
        assert_eq!(translated["verdict"], "TRANSLATED");
        assert_eq!(translated["event_type"]["type"], 7);
        assert_eq!(translated["sock_xlate_point"], "SOCK_XLATE_POINT_POST_DIRECTION_FWD");
        assert_eq!(translated["destination"]["pod_name"], "backend");
        assert_eq!(translated["IP"]["destination"], pods["shop/backend"].ip.to_string());
        assert_eq!(translated["destination_service"], serde_json::json!({"name": "backend", "namespace": "shop"}));
        assert!(translated["socket_cookie"].as_str().is_some_and(|c| c.parse::<u64>().is_ok()));
    }

    let status: netstack_ref::agent::api_types::Status = serde_json::from_slice(
        &netstack(&["status", "--state-dir", node.config.state_dir.to_str().unwrap(), "-o", "json"]).stdout,
    )
    .unwrap();
    let address = status.http.expect("status says where the HTTP server listens");

    check_metrics(&address);
    check_service_map_api(&address);
    let (monitor, backend) = (&pods["ops/monitor"], &pods["shop/backend"]);
    let another_connection = || {
        let outcome = probe::run(&monitor.netns, &backend.netns, backend.ip, Probe::Tcp(9090), Duration::from_secs(1));
        assert!(outcome.passed(), "{outcome:?}");
    };
    let browser = require_executable("chromium", "chromium").and(require_executable("chromedriver", "chromium-driver"));
    if browser.is_some() {
        check_page_in_chromium(&address, another_connection);
    }
}

/// `/metrics`: Hubble's families with the demo's counts, the agent's health, and a clean
/// `promtool check metrics`.
fn check_metrics(address: &str) {
    let (code, text) = http_get(address, "/metrics");
    assert_eq!(code, 200);
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value(r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"}"#) >= 3.0);
    assert!(value(r#"hubble_drop_total{reason="POLICY_DENY",protocol="TCP"}"#) >= 1.0);
    assert!(value(r#"hubble_drop_total{reason="POLICY_DENIED",protocol="UDP"}"#) >= 1.0);
    assert!(value(r#"hubble_policy_verdicts_total{direction="ingress",match="l3-l4",action="forwarded"}"#) >= 3.0);
    assert!(value(r#"hubble_policy_verdicts_total{direction="ingress",match="none",action="dropped"}"#) >= 1.0);
    assert!(
        value(r#"hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"}"#)
            >= 3.0
    );
    assert!(
        value(r#"hubble_flows_processed_total{protocol="TCP",type="Trace",subtype="to-endpoint",verdict="FORWARDED"}"#)
            >= 1.0
    );
    assert!(value(r#"hubble_tcp_flags_total{flag="SYN",family="IPv4"}"#) >= 3.0);
    assert!(value(r#"hubble_port_distribution_total{protocol="TCP",port="8080"}"#) >= 1.0);
    assert!(value(r#"hubble_icmp_total{family="IPv4",type="EchoRequest"}"#) >= 1.0);
    assert_eq!(value(r#"hubble_lost_events_total{source="perf_event_ring_buffer"}"#), 0.0);
    assert_eq!(value("cilium_endpoint"), 4.0);
    assert_eq!(value(r#"cilium_identity{type="local"}"#), 4.0);
    assert!(value(r#"cilium_bpf_map_pressure{map_name="ipcache"}"#) > 0.0);
    assert_eq!(value("netstack_agent_sync_errors"), 0.0);

    if require_executable("promtool", "prometheus").is_none() {
        return;
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An edge of the map as (from, to, protocol, port, class).
type Edge = (String, String, String, u64, String);

fn edges_of(map: &Value) -> Vec<Edge> {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let dropped = e["verdicts"]["DROPPED"].as_u64().unwrap_or(0);
            let class = match dropped {
                0 => "forwarded",
                n if Some(n) == e["connections"].as_u64() => "dropped",
                _ => "mixed",
            };
            (
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
                e["protocol"].as_str().unwrap().to_owned(),
                e["port"].as_u64().unwrap(),
                class.to_owned(),
            )
        })
        .collect()
}

fn edge(from: &str, to: &str, protocol: &str, port: u64, class: &str) -> Edge {
    (from.into(), to.into(), protocol.into(), port, class.into())
}

/// The demo's edges: workloads by their `app` label, one edge per port, coloured by verdict.
fn check_service_map_api(address: &str) {
    let (code, body) = http_get(address, "/api/service-map");
    assert_eq!(code, 200);
    let map: Value = serde_json::from_str(&body).unwrap();
    let edges = edges_of(&map);
    for want in [
        edge("shop/frontend", "shop/backend", "TCP", 8080, "forwarded"),
        // Through the service: the translation names it, the connection runs on through it.
        edge("shop/frontend", "svc:shop/backend", "TCP", 8080, "forwarded"),
        edge("svc:shop/backend", "shop/backend", "TCP", 8080, "mixed"),
        edge("shop/db", "svc:shop/backend", "TCP", 8080, "dropped"),
        edge("shop/frontend", "shop/backend", "UDP", 8080, "dropped"),
        edge("shop/frontend", "shop/backend", "ICMPv4", 0, "forwarded"),
        edge("shop/backend", "shop/db", "TCP", 5432, "forwarded"),
        edge("shop/frontend", "shop/db", "TCP", 5432, "dropped"),
        edge("ops/monitor", "shop/backend", "TCP", 9090, "forwarded"),
        edge("ops/monitor", "shop/db", "TCP", 9090, "dropped"),
        edge("shop/backend", "ops/monitor", "TCP", 9090, "dropped"),
    ] {
        assert!(edges.contains(&want), "{want:?} in {edges:?}");
    }
    assert_eq!(map["namespaces"], serde_json::json!(["ops", "shop"]));
    let (code, body) = http_get(address, "/api/service-map?namespace=ops");
    assert_eq!(code, 200);
    let ops = edges_of(&serde_json::from_str(&body).unwrap());
    assert!(ops.iter().all(|(from, to, ..)| from.starts_with("ops/") || to.starts_with("ops/")), "{ops:?}");
    assert_eq!(ops.len(), 3, "{ops:?}");

    let (code, body) = http_get(address, "/api/edge-flows?from=ops/monitor&to=shop/db&port=9090&protocol=TCP");
    assert_eq!(code, 200);
    let flows: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(!flows.is_empty() && flows.iter().all(|r| r["flow"]["destination"]["pod_name"] == "db"), "{flows:?}");
    assert_eq!(http_get(address, "/api/edge-flows?from=a&to=b&port=1&protocol=TCP").0, 404);
}

/// What a screenshot shows: how many pixels have each edge colour.
fn colour_counts(png_bytes: &[u8]) -> BTreeMap<&'static str, usize> {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let mut counts = BTreeMap::new();
    let colours = [("forwarded", [0x2b, 0x8a, 0x3e]), ("dropped", [0xe0, 0x31, 0x31]), ("mixed", [0xf0, 0x8c, 0x00])];
    for pixel in pixels[..info.buffer_size()].chunks(channels) {
        for (name, rgb) in colours {
            if pixel[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 12) {
                *counts.entry(name).or_default() += 1;
            }
        }
    }
    counts
}

/// The page in a real browser: the demo's edges drawn in their colours, the `ops` namespace
/// picked from the filter, a new connection appearing live, the dropped edge clicked and its
/// flows listed.
fn check_page_in_chromium(address: &str, another_connection: impl Fn()) {
    let driver = ChromeDriver::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(ChromeDriver::headless())
            .connect(&driver.url)
            .await
            .expect("a WebDriver session with headless Chromium");
        let result = drive_page(&client, address, another_connection).await;
        let _ = client.close().await;
        result.unwrap();
    });
}

async fn drive_page(
    client: &fantoccini::Client,
    address: &str,
    another_connection: impl Fn(),
) -> Result<(), fantoccini::error::CmdError> {
    let wait = Duration::from_secs(15);
    client.goto(&format!("http://{address}/")).await?;
    client.wait().at_most(wait).for_element(Locator::Css("body[data-updates] g.edge")).await?;
    let drawn = drawn_edges(client).await?;
    for want in [
        edge("shop/frontend", "shop/backend", "TCP", 8080, "forwarded"),
        edge("shop/frontend", "shop/db", "TCP", 5432, "dropped"),
        edge("ops/monitor", "shop/db", "TCP", 9090, "dropped"),
    ] {
        assert!(drawn.contains(&want), "the page draws {want:?}: {drawn:?}");
    }
    let everything = colour_counts(&client.screenshot().await?);
    assert!(everything.get("forwarded").is_some_and(|&n| n > 100), "green edges on screen: {everything:?}");
    assert!(everything.get("dropped").is_some_and(|&n| n > 100), "red edges on screen: {everything:?}");

    // Pick the `ops` namespace: only edges touching it stay.
    client.find(Locator::Css("#namespace")).await?.select_by_value("ops").await?;
    client.wait().at_most(wait).for_element(Locator::Css(r#"body[data-namespace="ops"] g.edge"#)).await?;
    let ops = drawn_edges(client).await?;
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(ops.iter().all(|(from, to, ..)| from.starts_with("ops/") || to.starts_with("ops/")), "{ops:?}");
    assert!(client.current_url().await?.as_str().ends_with("?namespace=ops"));
    let screenshot = client.screenshot().await?;
    let colours = colour_counts(&screenshot);
    assert!(colours.get("forwarded").is_some_and(|&n| n > 50), "monitor → backend in green: {colours:?}");
    assert!(colours.get("dropped").is_some_and(|&n| n > 50), "monitor → db in red: {colours:?}");
    if let Some(dir) = std::env::var_os("NETSTACK_SCREENSHOT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("service-map-ops.png"), &screenshot).unwrap();
    }

    // A new connection reaches the open page by itself (server-sent events).
    let live = r#"g.edge[data-from="ops/monitor"][data-to="shop/backend"][data-connections="2"]"#;
    assert!(client.find(Locator::Css(live)).await.is_err(), "one monitor → backend connection so far");
    another_connection();
    client.wait().at_most(wait).for_element(Locator::Css(live)).await?;

    // Click the dropped edge: its recent flows are listed, dropped by the CCNP's deny rule.
    let dropped =
        client.find(Locator::Css(r#"g.edge.dropped[data-from="ops/monitor"][data-to="shop/db"] text"#)).await?;
    dropped.click().await?;
    client.wait().at_most(wait).for_element(Locator::Css("body[data-flows-shown]")).await?;
    let mut rows = Vec::new();
    for row in client.find_all(Locator::Css("#flows tbody tr")).await? {
        rows.push(row.text().await?);
    }
    assert!(rows.iter().all(|r| r.contains("ops/monitor") && r.contains("shop/db")), "{rows:?}");
    // The monitor's egress forwards; the db's ingress drops by the deny rule.
    assert!(rows.iter().any(|r| r.contains("DROPPED") && r.contains("POLICY_DENY")), "{rows:?}");
    let title = client.find(Locator::Css("#flows-title")).await?.text().await?;
    assert!(title.contains("ops/monitor → shop/db TCP/9090"), "{title}");
    Ok(())
}

async fn drawn_edges(client: &fantoccini::Client) -> Result<Vec<Edge>, fantoccini::error::CmdError> {
    let mut edges = Vec::new();
    for g in client.find_all(Locator::Css("g.edge")).await? {
        let attr = |name: &'static str| {
            let g = g.clone();
            async move { Ok::<_, fantoccini::error::CmdError>(g.attr(name).await?.unwrap_or_default()) }
        };
        let class = attr("class").await?;
        let class = class.split(' ').find(|c| ["forwarded", "dropped", "mixed"].contains(c)).unwrap_or("").to_owned();
        edges.push((
            attr("data-from").await?,
            attr("data-to").await?,
            attr("data-protocol").await?,
            attr("data-port").await?.parse().unwrap_or(0),
            class,
        ));
    }
    Ok(edges)
}
