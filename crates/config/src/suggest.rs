//! "Did you mean" suggestions for unknown keys, by edit distance.

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions, so
/// `procesess` is one edit away from `processes`).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The closest candidate within a distance that still looks like a typo: 1 edit for short
/// names, 2 from 5 characters, 3 from 10. Earlier candidates win ties, so callers list the
/// options they prefer to suggest first. Underscores are compared as dashes
/// (`harakiri_verbose` -> `harakiri-verbose`).
pub fn suggest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Option names are short and made of [a-z0-9-]: anything else is not a typo of one,
    // and skipping it keeps hostile input cheap.
    let plausible = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if key.is_empty() || key.len() > 64 || !key.bytes().all(plausible) {
        return None;
    }
    let normalised = key.replace('_', "-").to_ascii_lowercase();
    let max = match key.chars().count() {
        0..=4 => 1,
        5..=9 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // The distance is at least the length difference: skip hopeless candidates cheaply.
        if candidate == key || candidate.len().abs_diff(normalised.len()) > max {
            continue;
        }
        let d = distance(&normalised, candidate);
        if d <= max && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, want) in [
            ("", "", 0),
            ("a", "", 1),
            ("procesess", "processes", 1),
            ("vaccum", "vacuum", 1),
            ("socker", "socket", 1),
            ("kitten", "sitting", 3),
            ("ab", "ba", 1),
        ] {
            assert_eq!(distance(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn suggestions() {
        let names = [
            "processes",
            "socket",
            "vacuum",
            "harakiri-verbose",
            "uid",
            "gid",
            "module",
        ];
        for (key, want) in [
            ("procesess", Some("processes")),
            ("proesses", Some("processes")),
            ("vaccuum", Some("vacuum")),
            ("socker", Some("socket")),
            ("harakiri_verbose", Some("harakiri-verbose")),
            ("zuid", Some("uid")),
            ("Module", Some("module")),
            ("base", None),
            ("projectdomain", None),
            ("", None),
        ] {
            assert_eq!(suggest(key, names), want, "{key}");
        }
    }
}
