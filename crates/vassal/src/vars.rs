//! The request variables (CGI names -> bytes) of one request, in arrival order,
//! stored in one reusable buffer so building them allocates nothing per request.

#[derive(Debug, Default)]
pub struct VarList {
    data: Vec<u8>,
    /// (key start, key end = value start, value end) into `data`.
    idx: Vec<(usize, usize, usize)>,
}

impl VarList {
    pub fn clear(&mut self) {
        self.data.clear();
        self.idx.clear();
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let ks = self.data.len();
        self.data.extend_from_slice(key);
        let vs = self.data.len();
        self.data.extend_from_slice(value);
        self.idx.push((ks, vs, self.data.len()));
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.idx
            .iter()
            .map(|&(k, v, e)| (&self.data[k..v], &self.data[v..e]))
    }

    /// The last value of `key` (the one a dict would keep).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// Replaces the value of every `key` entry (used for modifier1 30 PATH_INFO).
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        let old: Vec<(Vec<u8>, Vec<u8>)> = self
            .iter()
            .map(|(k, v)| {
                if k == key {
                    (k.to_vec(), value.to_vec())
                } else {
                    (k.to_vec(), v.to_vec())
                }
            })
            .collect();
        self.clear();
        for (k, v) in old {
            self.push(&k, &v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_last_value_wins() {
        let mut v = VarList::default();
        v.push(b"A", b"1");
        v.push(b"B", b"");
        v.push(b"A", b"2");
        assert_eq!(v.iter().count(), 3);
        assert_eq!(v.get(b"A"), Some(&b"2"[..]));
        assert_eq!(v.get(b"B"), Some(&b""[..]));
        assert_eq!(v.get(b"C"), None);
        v.set(b"A", b"x");
        assert_eq!(
            v.iter().map(|(_, v)| v.to_vec()).collect::<Vec<_>>(),
            [b"x".to_vec(), vec![], b"x".to_vec()]
        );
    }
}
