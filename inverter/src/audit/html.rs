//! The audit report as one self-contained HTML page (inline CSS and SVG, no scripts,
//! nothing fetched): what a compliance reviewer reads.

use std::collections::HashMap;
use std::fmt::Write;

use super::AuditReport;
use crate::pii::{PiiRow, ANCHOR};
use crate::secrets::SecretFinding;
use crate::text::words;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` with every word that also occurs in `other` (as often as it does there)
/// wrapped in `<mark>`; everything else escaped as is.
fn highlight(text: &str, other: &str) -> String {
    let mut left: HashMap<String, usize> = HashMap::new();
    for w in words(other) {
        *left.entry(w).or_default() += 1;
    }
    let mut out = String::new();
    let mut word = String::new();
    let mut flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let key = word.to_lowercase();
        match left.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                let _ = write!(out, "<mark>{}</mark>", esc(word));
            }
            _ => out.push_str(&esc(word)),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push_str(&esc(&c.to_string()));
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Grouped bars per defence: reconstruction token F1 and retrieval nDCG@10 (0-1).
fn chart(r: &AuditReport) -> String {
    let n = r.defences.len().max(1);
    let (w, h, pad, top) = (120 * n + 80, 260, 50, 20);
    let plot_h = (h - pad - top) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="token F1 and nDCG@10 per defence">"#
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let y = top as f64 + plot_h * (1.0 - v);
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{v:.2}</text>"##,
            w - 10,
            pad - 6,
            y + 4.0
        );
    }
    for (i, d) in r.defences.iter().enumerate() {
        let x0 = pad + 20 + i * 120;
        let bars = [
            (d.token_f1, "#c0392b"),
            (d.ndcg_at_10.unwrap_or(0.0), "#2471a3"),
        ];
        for (j, (v, colour)) in bars.iter().enumerate() {
            let bh = plot_h * v.clamp(0.0, 1.0);
            let _ = write!(
                s,
                r#"<rect x="{}" y="{:.1}" width="36" height="{bh:.1}" fill="{colour}"><title>{v:.3}</title></rect><text x="{}" y="{:.1}" font-size="10" text-anchor="middle">{v:.2}</text>"#,
                x0 + j * 40,
                top as f64 + plot_h - bh,
                x0 + j * 40 + 18,
                top as f64 + plot_h - bh - 3.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            x0 + 38,
            h - pad + 16,
            esc(&d.defence.to_string())
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{pad}" y="{}" width="10" height="10" fill="#c0392b"/><text x="{}" y="{}" font-size="11">reconstruction token F1 (lower is safer)</text><rect x="{}" y="{}" width="10" height="10" fill="#2471a3"/><text x="{}" y="{}" font-size="11">retrieval nDCG@10 (higher is better)</text></svg>"##,
        h - 18,
        pad + 14,
        h - 9,
        pad + 250,
        h - 18,
        pad + 264,
        h - 9
    );
    s
}

/// The status, words-back and order cells of one secret's row. Green only for a
/// secret none of whose words came back; every word back is "recovered" whatever
/// the order (the order has its own column).
fn secret_cells(f: &SecretFinding) -> String {
    let status = if f.recovered {
        r#"<span class="bad">recovered</span>"#
    } else if f.partly() {
        r#"<span class="warn">partly leaked</span>"#
    } else {
        r#"<span class="ok">not recovered</span>"#
    };
    let order = match (f.recovered, f.in_order) {
        (_, true) => "yes",
        (true, false) => "no (all words, scattered)",
        (false, false) => "n/a",
    };
    format!(
        "<td>{status}</td><td>{:.0}%</td><td>{order}</td>",
        100.0 * f.partial
    )
}

/// What the report says about the attack's own strength (stored reports from before
/// it was recorded say so).
fn strength(r: &AuditReport) -> String {
    let mut s = r.attack.as_ref().map_or_else(
        || format!("This attack's strength on Engram's PII benchmark is not recorded in this report; for comparison, {ANCHOR}."),
        PiiRow::sentence,
    );
    if !r.shown_safe {
        s += " Little recovered here is not evidence that the vectors are safe to share: \
              only a strong attack's failure would be.";
    }
    s
}

pub fn render(r: &AuditReport) -> String {
    let mut s = String::new();
    let base = &r.defences[0];
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Leakage audit: {c}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;width:100%;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}
mark{{background:#f5b7b1}}.grade{{font-size:3em;font-weight:bold;float:left;margin-right:.4em}}.ok{{color:#1e8449}}.bad{{color:#c0392b}}.warn{{color:#b9770e}}</style></head><body>
<h1>Leakage audit: collection <code>{c}</code></h1>
<p><span class="grade">{g}</span><strong>{v}</strong><br>Token F1 {f1:.3}, BLEU-4 {bleu:.1}, exact match {em:.0}%, cosine {cos:.3} over {n} sampled documents
(encoder {enc}; search {steps} steps, beam {beam}; {secs:.0} s).</p>
<p style="clear:both">How to read this: an attacker who obtains the stored vectors (a backup, a replica, an API returning vectors) runs the same kind of
search as this audit: guess a text, embed it with the public model, compare with the vector, correct. Highlighted words in a reconstruction are words of
the original the attacker got back.</p>
<h2>How strong this attack is</h2><p>{strength}</p>"#,
        strength = esc(&strength(r)),
        c = esc(&r.collection),
        g = r.grade,
        v = esc(&r.verdict),
        f1 = base.token_f1,
        bleu = base.bleu,
        em = 100.0 * base.exact_match,
        cos = base.cosine,
        n = r.documents.len(),
        enc = esc(&r.encoder),
        steps = r.options.steps,
        beam = r.options.beam,
        secs = r.seconds,
    );
    // Secrets.
    let _ = write!(
        s,
        "<h2>Secrets</h2><p>{} secrets (e-mail addresses, phone numbers, account or card numbers, names) in the sampled originals; {} fully recovered from the undefended vectors.</p>",
        r.secrets_found, r.secrets_recovered
    );
    if r.secrets_found > 0 {
        s += "<table><tr><th>document</th><th>kind</th><th>in the original</th><th>leaked</th><th>its words back</th><th>in order</th></tr>";
        for d in &r.documents {
            for f in &d.secrets {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td>{}</tr>",
                    esc(&d.id),
                    f.kind.name(),
                    esc(&f.value),
                    secret_cells(f)
                );
            }
        }
        s += "</table>";
    }
    // Defences.
    s += "<h2>Defences</h2><p>Each defence is applied to the stored vectors; the attacker inverts them without any key. Retrieval is measured with the legitimate user's queries (rotated with the key where there is one).</p>";
    s += &chart(r);
    let _ = write!(
        s,
        "<table><tr><th>defence</th><th>token F1</th><th>BLEU-4</th><th>cosine</th><th>secrets recovered</th><th>nDCG@10</th><th>nDCG@10 cost (points)</th></tr>"
    );
    for d in &r.defences {
        let opt = |v: Option<f64>, p: usize| {
            v.map_or("n/a".to_string(), |v| format!("{v:.prec$}", prec = p))
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.1}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.defence.to_string()),
            d.token_f1,
            d.bleu,
            d.cosine,
            d.secrets_recovered,
            opt(d.ndcg_at_10, 3),
            opt(d.ndcg_loss_points, 1)
        );
    }
    let _ = write!(
        s,
        "</table><p>Retrieval: {} queries ({}) over {} documents.</p>",
        r.queries,
        esc(&r.query_source),
        r.corpus_documents
    );
    // Documents.
    s += "<h2>Sampled documents (undefended)</h2><table><tr><th>original</th><th>reconstruction</th><th>scores</th></tr>";
    for d in &r.documents {
        let _ = write!(
            s,
            "<tr><td><small>{}</small><br>{}</td><td>{}</td><td>F1 {:.2}<br>BLEU {:.1}<br>exact {}<br>cosine {:.3}</td></tr>",
            esc(&d.id),
            highlight(&d.original, &d.reconstruction),
            highlight(&d.reconstruction, &d.original),
            d.token_f1,
            d.bleu,
            if d.exact_match { "yes" } else { "no" },
            d.cosine
        );
    }
    s += "</table></body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::secrets::SecretKind;

    fn finding(recovered: bool, in_order: bool, partial: f64) -> SecretFinding {
        SecretFinding {
            kind: SecretKind::Name,
            value: "Yellowstone National Park".into(),
            recovered,
            in_order,
            partial,
        }
    }

    #[test]
    fn secret_rows_never_call_a_leak_green() {
        let all_scattered = secret_cells(&finding(true, false, 1.0));
        assert!(
            all_scattered.contains(r#"class="bad">recovered"#),
            "{all_scattered}"
        );
        assert!(all_scattered.contains("100%") && all_scattered.contains("scattered"));
        assert!(!all_scattered.contains("ok"));
        let part = secret_cells(&finding(false, false, 1.0 / 3.0));
        assert!(part.contains("warn") && part.contains("33%") && !part.contains("\"ok\""));
        let none = secret_cells(&finding(false, false, 0.0));
        assert!(none.contains(r#"class="ok">not recovered"#) && none.contains("0%"));
    }

    #[test]
    fn highlight_marks_shared_words_once_and_escapes() {
        assert_eq!(
            highlight("The <b>cat</b>, the cat.", "cat the"),
            "<mark>The</mark> &lt;<mark>b</mark>&gt;<mark>cat</mark>&lt;/b&gt;, the cat."
                .replace("<mark>b</mark>", "b")
        );
    }
}
