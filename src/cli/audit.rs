use std::{path::PathBuf, process::ExitCode};

use catdog_data::printable;
use catdog_train::{
    audit::{audit, AuditRequest},
    ProgressMode,
};

use super::{
    args::{AuditArgs, GivenFlags},
    train::{timestamp, train_config},
    usage, Failure,
};

/// Settings (by argument id) an audit does not use: it has no held-out folder and audits every
/// photo of --data.
const IGNORED_BY_AUDIT: [&str; 2] = ["test", "exclude"];

pub fn run(a: AuditArgs, given: &GivenFlags) -> Result<ExitCode, Failure> {
    let ignored = given.named(|id| IGNORED_BY_AUDIT.contains(&id));
    if !ignored.is_empty() {
        eprintln!(
            "warning: audit judges every photo of --data; ignored: {}",
            ignored.join(", ")
        );
    }
    // Each fold's model trains in its share of the budget, and its recipe is chosen for it.
    let config = train_config(&a.settings, a.folds.into())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("audit-{}", timestamp())));
    if out.starts_with(&config.data) {
        return Err(usage(anyhow::anyhow!(
            "--out {} lies inside --data: the audit never writes into the folder it audits",
            out.display()
        )));
    }
    let report = audit(AuditRequest {
        config,
        folds: a.folds.into(),
        out,
        force: a.force,
        gallery: a.gallery.into(),
        progress: if a.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::auto()
        },
    })?;
    println!(
        "\n{} of {} photos probably mislabelled; {} pairs of near-duplicates",
        report.issues.len(),
        report.photos,
        report.duplicates.len()
    );
    for (path, issue) in report.issues.iter().take(10) {
        println!(
            "  {}  labelled {}, looks {} (score {:.3})",
            printable(&path.to_string_lossy()),
            printable(&report.classes[issue.given]),
            printable(&report.classes[issue.suggested]),
            issue.score
        );
    }
    println!(
        "written: {0}/audit.csv (for `catdog train --exclude {0}/audit.csv`), {0}/duplicates.csv, \
         {0}/label-issues.png",
        report.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
