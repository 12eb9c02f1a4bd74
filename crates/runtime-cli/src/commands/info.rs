use std::io::Write;

use anyhow::Context;
use berth_runtime::container;

use crate::Globals;
use crate::args::{ListArgs, PsArgs, SpecArgs};

pub fn state(g: &Globals, id: &str) -> anyhow::Result<()> {
    let s = container::state(&g.root, id)?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}

pub fn list(g: &Globals, a: &ListArgs) -> anyhow::Result<()> {
    let all = container::list(&g.root)?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for s in &all {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    if a.format == "json" {
        writeln!(out, "{}", serde_json::to_string(&all)?)?;
        return Ok(());
    }
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for s in &all {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            if s.owner.is_empty() {
                "root".into()
            } else {
                s.owner.clone()
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 5 {
                    format!("{c:<w$}", w = widths[i] + 3)
                } else {
                    c.clone()
                }
            })
            .collect();
        writeln!(out, "{}", line.concat().trim_end())?;
    }
    Ok(())
}

pub fn ps(g: &Globals, a: &PsArgs) -> anyhow::Result<()> {
    let pids = container::ps(&g.root, &a.id)?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        if let Some(pid) = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            && pids.contains(&pid)
        {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn spec(a: &SpecArgs) -> anyhow::Result<()> {
    let dir = a.bundle.clone().unwrap_or_else(|| ".".into());
    let path = dir.join("config.json");
    if path.exists() {
        anyhow::bail!("{} already exists; remove it first", path.display());
    }
    let spec = berth_runtime::spec::default_spec(a.rootless);
    let data = serde_json::to_vec_pretty(&spec)?;
    std::fs::write(&path, data).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

pub fn features() -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&berth_runtime::features::features())?
    );
    Ok(())
}
