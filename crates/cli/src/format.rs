//! Output the way the docker CLI prints it: tab-aligned tables (Go's
//! tabwriter with docker's settings), human sizes ("4.26MB"), durations
//! ("2 minutes ago"), ellipsised ids and commands, and `--format` rendering
//! of rows (plain, `table …`, `json`).

use serde_json::Value;

use crate::template::{Template, TemplateError};

/// Go's text/tabwriter with docker's settings for tables: cells end at
/// `\t`, a column is as wide as its widest cell plus `padding`, at least
/// `minwidth`; the last cell of a line is not padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let ncols = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut widths = vec![minwidth; ncols];
    for l in &lines {
        // Every cell but the last is tab-terminated and part of a column.
        for (i, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + padding);
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for (n, l) in lines.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let last = l.len().saturating_sub(1);
        for (i, c) in l.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
    }
    out
}

/// go-units' HumanSizeWithPrecision(size, 3): decimal units, 3 significant digits.
pub fn human_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g3(s), UNITS[i])
}

/// go-units' BytesSize: binary units ("64MiB"), 4 significant digits.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1024.0 && i < UNITS.len() - 1 {
        s /= 1024.0;
        i += 1;
    }
    let t = format!("{s:.4}");
    let t = if let Some(dot) = t.find('.') {
        // %.4g: 4 significant digits, trailing zeros dropped.
        let int_digits = dot;
        let keep = 4usize.saturating_sub(int_digits);
        let mut t = format!("{s:.keep$}");
        if t.contains('.') {
            t = t.trim_end_matches('0').trim_end_matches('.').to_owned();
        }
        t
    } else {
        t
    };
    format!("{t}{}", UNITS[i])
}

/// Go's `%.3g` for 0 <= v < 1000.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let t = format!("{v:.digits$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        t
    }
}

/// go-units' HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = (s as f64 / 3600.0).round() as i64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// "2 minutes ago" for a unix time, relative to `now`.
pub fn ago(created: i64, now: i64) -> String {
    format!("{} ago", human_duration(now - created))
}

/// docker's Ellipsis: at most `max` characters, the last one "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The 12-hex short form of an id (`sha256:` dropped).
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// The PORTS column from a ContainerSummary's `Ports`.
pub fn display_ports(ports: &Value) -> String {
    let Some(list) = ports.as_array() else {
        return String::new();
    };
    let mut items: Vec<(String, u64, String)> = list
        .iter()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let typ = p["Type"].as_str().unwrap_or("tcp");
            let s = match p["PublicPort"].as_u64() {
                Some(public) if public != 0 => {
                    let ip = p["IP"].as_str().unwrap_or("");
                    let ip = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_owned()
                    };
                    format!("{ip}:{public}->{private}/{typ}")
                }
                _ => format!("{private}/{typ}"),
            };
            (p["IP"].as_str().unwrap_or("").to_owned(), private, s)
        })
        .collect();
    items.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    items.dedup_by(|a, b| a.2 == b.2);
    items
        .into_iter()
        .map(|i| i.2)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders `rows` with a docker `--format` value: `table …` prints a header
/// (the template run over `header`) and aligns columns; `json` is `{{json .}}`;
/// anything else is one line per row.
pub fn render_rows(format: &str, rows: &[Value], header: &Value) -> Result<String, TemplateError> {
    let format = if format == "json" {
        "{{json .}}"
    } else {
        format
    };
    let t = Template::parse(format)?;
    let mut text = String::new();
    if t.table {
        text.push_str(&t.render(header)?);
        text.push('\n');
    }
    for r in rows {
        text.push_str(&t.render(r)?);
        text.push('\n');
    }
    if t.table {
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let mut out = tabwrite(trimmed, 10, 3);
        out.push('\n');
        Ok(out)
    } else {
        Ok(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_like_docker_ps() {
        let t = "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES";
        assert_eq!(
            tabwrite(t, 10, 3),
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES"
        );
        let t = "A\tB\nlonger text\tx";
        assert_eq!(tabwrite(t, 1, 2), "A            B\nlonger text  x");
    }

    #[test]
    fn rows_as_table_with_header() {
        let rows = vec![
            json!({"Repository": "busybox", "Tag": "latest", "ID": "0123456789ab"}),
            json!({"Repository": "localhost:5000/a-much-longer-name", "Tag": "v1", "ID": "ba9876543210"}),
        ];
        let header = json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID"});
        let out = render_rows("table {{.Repository}}\t{{.Tag}}\t{{.ID}}", &rows, &header).unwrap();
        assert_eq!(
            out,
            "REPOSITORY                          TAG       IMAGE ID\n\
             busybox                             latest    0123456789ab\n\
             localhost:5000/a-much-longer-name   v1        ba9876543210\n"
        );
        let out = render_rows("{{.Repository}}:{{.Tag}}", &rows, &header).unwrap();
        assert_eq!(
            out,
            "busybox:latest\nlocalhost:5000/a-much-longer-name:v1\n"
        );
        let out = render_rows("json", &rows[..1], &header).unwrap();
        assert_eq!(
            out,
            "{\"ID\":\"0123456789ab\",\"Repository\":\"busybox\",\"Tag\":\"latest\"}\n"
        );
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(1234.0), "1.23kB");
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(124_000_000.0), "124MB");
        assert_eq!(human_size(1_500_000_000.0), "1.5GB");
        assert_eq!(bytes_size(67_108_864.0), "64MiB");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(100.0), "100B");
        assert_eq!(bytes_size(15_898_574_848.0), "14.81GiB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(ago(100, 220), "2 minutes ago");
    }

    #[test]
    fn ids_commands_ports() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("sleep 1000000000000000000", 20),
            "sleep 1000000000000…"
        );
        assert_eq!(ellipsis("echo hi", 20), "echo hi");
        let ports = json!([
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"PrivatePort": 53, "Type": "udp"}
        ]);
        assert_eq!(
            display_ports(&ports),
            "53/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
    }
}
