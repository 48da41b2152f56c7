//! User-defined read-only queries (`config.queries`).

use crate::config::{CustomKind, CustomQuery};
use crate::{Ctx, value};
use sonde_plugin_sdk::{Collection, Kind};

pub fn collect(ctx: &Ctx, q: &CustomQuery, out: &mut Collection) -> Result<(), String> {
    let rows = ctx.query(&q.query).map_err(|e| e.message().to_string())?;
    let find = |c: &String| {
        rows.column(c)
            .ok_or_else(|| format!("column {c:?} is not in the result (columns: {:?})", rows.columns))
    };
    let labels: Vec<(usize, &str)> = q
        .labels
        .iter()
        .map(|c| Ok((find(c)?, c.as_str())))
        .collect::<Result<_, String>>()?;
    let values: Vec<usize> = q.values.iter().map(find).collect::<Result<_, String>>()?;
    let kind = match q.kind {
        CustomKind::Gauge => Kind::Gauge,
        CustomKind::Counter => Kind::Counter,
    };
    let help = q
        .help
        .clone()
        .unwrap_or_else(|| format!("sonde custom query {}", q.metric));
    for (col, name) in values.iter().zip(&q.values) {
        let family = format!("{}_{name}", q.metric);
        let f = out.family(&family, kind, &help);
        for row in &rows.rows {
            let texts: Vec<String> = labels.iter().map(|(i, _)| row[*i].to_label()).collect();
            let l: Vec<(&str, &str)> = labels.iter().zip(&texts).map(|((_, n), v)| (*n, v.as_str())).collect();
            out.sample(f, &family, &l, value(&row[*col]));
        }
    }
    Ok(())
}
