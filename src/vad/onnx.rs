//! Just enough of the ONNX file format to take the weights out of a model:
//! every `float`, `uint8`, `int8` and `int32` tensor, whether a graph
//! initializer or the value of a `Constant` node, in the main graph and in
//! the subgraphs of control-flow nodes (Silero keeps each rate's weights in
//! one branch of an `If`; Smart Turn's int8 weights, scales and zero points
//! are initializers).
//!
//! An ONNX file is a protobuf `ModelProto`. Only these fields are read
//! (numbers from `onnx.proto3`); everything else is skipped by wire type:
//!
//! | message | fields read |
//! |---|---|
//! | `ModelProto` | 7 `graph` |
//! | `GraphProto` | 1 `node`, 5 `initializer` |
//! | `NodeProto` | 2 `output`, 4 `op_type`, 5 `attribute` |
//! | `AttributeProto` | 1 `name`, 5 `t`, 6 `g` |
//! | `TensorProto` | 1 `dims`, 2 `data_type`, 4 `float_data`, 5 `int32_data`, 8 `name`, 9 `raw_data`, 14 `data_location` |

use super::VadError;

/// `TensorProto.DataType.FLOAT`.
const FLOAT: u64 = 1;
/// `TensorProto.DataType.UINT8`.
const UINT8: u64 = 2;
/// `TensorProto.DataType.INT8`.
const INT8: u64 = 3;
/// `TensorProto.DataType.INT32`.
const INT32: u64 = 6;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: u64 = 1;
/// Subgraphs nest a few levels deep in real models; this bounds the
/// recursion on a hostile file.
const MAX_DEPTH: usize = 16;

/// A tensor's values, by element type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TensorData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

impl TensorData {
    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }
}

/// A tensor found in the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor<D = Vec<f32>> {
    /// The tensor's name: an initializer's own name, or the output name of
    /// the `Constant` node that holds it.
    pub(crate) name: String,
    /// Where it was found: the attribute names of the subgraphs enclosing it,
    /// outermost first (empty for the main graph), e.g. `["then_branch"]`.
    pub(crate) scope: Vec<String>,
    /// Its shape.
    pub(crate) dims: Vec<usize>,
    /// Its values, row-major.
    pub(crate) data: D,
}

/// Every float tensor in the ONNX model `bytes`, in file order.
pub(crate) fn float_tensors(bytes: &[u8]) -> Result<Vec<Tensor>, VadError> {
    Ok(tensors(bytes)?
        .into_iter()
        .filter_map(|t| match t.data {
            TensorData::F32(data) => Some(Tensor {
                name: t.name,
                scope: t.scope,
                dims: t.dims,
                data,
            }),
            _ => None,
        })
        .collect())
}

/// Every tensor of a type in [`TensorData`] in the ONNX model `bytes`, in
/// file order.
pub(crate) fn tensors(bytes: &[u8]) -> Result<Vec<Tensor<TensorData>>, VadError> {
    let mut tensors = Vec::new();
    let mut model = Fields::new(bytes);
    while let Some((field, value)) = model.next_field()? {
        if field == 7 {
            read_graph(value.bytes()?, &mut Vec::new(), &mut tensors)?;
        }
    }
    Ok(tensors)
}

fn read_graph(
    bytes: &[u8],
    scope: &mut Vec<String>,
    tensors: &mut Vec<Tensor<TensorData>>,
) -> Result<(), VadError> {
    if scope.len() > MAX_DEPTH {
        return Err(malformed("subgraphs nested too deeply"));
    }
    let mut graph = Fields::new(bytes);
    while let Some((field, value)) = graph.next_field()? {
        match field {
            1 => read_node(value.bytes()?, scope, tensors)?,
            5 => {
                if let Some(tensor) = read_tensor(value.bytes()?, None, scope)? {
                    tensors.push(tensor);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_node(
    bytes: &[u8],
    scope: &mut Vec<String>,
    tensors: &mut Vec<Tensor<TensorData>>,
) -> Result<(), VadError> {
    let mut op_type = "";
    let mut first_output = None;
    let mut attributes = Vec::new();
    let mut node = Fields::new(bytes);
    while let Some((field, value)) = node.next_field()? {
        match field {
            2 if first_output.is_none() => first_output = Some(value.string()?),
            4 => op_type = value.string()?,
            5 => attributes.push(value.bytes()?),
            _ => {}
        }
    }
    for attribute in attributes {
        let mut name = "";
        let mut tensor = None;
        let mut graph = None;
        let mut fields = Fields::new(attribute);
        while let Some((field, value)) = fields.next_field()? {
            match field {
                1 => name = value.string()?,
                5 => tensor = Some(value.bytes()?),
                6 => graph = Some(value.bytes()?),
                _ => {}
            }
        }
        if let Some(graph) = graph {
            scope.push(name.to_owned());
            let read = read_graph(graph, scope, tensors);
            scope.pop();
            read?;
        }
        if let (Some(tensor), "Constant", "value") = (tensor, op_type, name)
            && let Some(tensor) = read_tensor(tensor, first_output, scope)?
        {
            tensors.push(tensor);
        }
    }
    Ok(())
}

/// The tensor in `bytes` if its type is one of [`TensorData`]'s; `name`
/// overrides its own name.
fn read_tensor(
    bytes: &[u8],
    name: Option<&str>,
    scope: &[String],
) -> Result<Option<Tensor<TensorData>>, VadError> {
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut own_name = "";
    let mut floats = Vec::new();
    // `int32_data` holds int8, uint8 and int32 values, one varint each.
    let mut ints: Vec<i32> = Vec::new();
    let mut raw: Option<&[u8]> = None;
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Varint(d)) => dims.push(d),
            (1, Value::Bytes(packed)) => {
                let mut packed = Fields::new(packed);
                while !packed.at_end() {
                    dims.push(packed.varint()?);
                }
            }
            (2, value) => data_type = value.varint()?,
            (4, Value::Fixed32(bits)) => floats.push(f32::from_bits(bits)),
            (4, Value::Bytes(packed)) => floats.extend(le_floats(packed)?),
            // Negative values are sign-extended to 64 bits; the low 32 are
            // the int32.
            (5, Value::Varint(v)) => ints.push(v as i32),
            (5, Value::Bytes(packed)) => {
                let mut packed = Fields::new(packed);
                while !packed.at_end() {
                    ints.push(packed.varint()? as i32);
                }
            }
            (8, value) => own_name = value.string()?,
            (9, value) => raw = Some(value.bytes()?),
            (14, value) if value.varint()? == EXTERNAL => {
                return Err(malformed("tensor data stored outside the file"));
            }
            _ => {}
        }
    }
    fn narrow<T: TryFrom<i32>>(ints: Vec<i32>) -> Result<Vec<T>, VadError> {
        ints.into_iter()
            .map(|v| T::try_from(v).map_err(|_| malformed("an 8-bit value out of range")))
            .collect()
    }
    let data = match (data_type, raw) {
        (FLOAT, Some(raw)) => TensorData::F32(le_floats(raw)?),
        (FLOAT, None) => TensorData::F32(floats),
        (UINT8, Some(raw)) => TensorData::U8(raw.to_vec()),
        (UINT8, None) => TensorData::U8(narrow(ints)?),
        (INT8, Some(raw)) => TensorData::I8(raw.iter().map(|b| *b as i8).collect()),
        (INT8, None) => TensorData::I8(narrow(ints)?),
        (INT32, Some(raw)) => TensorData::I32(le_ints(raw)?),
        (INT32, None) => TensorData::I32(ints),
        _ => return Ok(None),
    };
    let name = name.unwrap_or(own_name).to_owned();
    let dims = dims
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| malformed("tensor dimension out of range"))?;
    let expected = dims.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    if expected != Some(data.len()) {
        return Err(VadError::TensorSize {
            name,
            dims,
            values: data.len(),
        });
    }
    Ok(Some(Tensor {
        name,
        scope: scope.to_vec(),
        dims,
        data,
    }))
}

fn le_floats(bytes: &[u8]) -> Result<Vec<f32>, VadError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(malformed("float data is not a whole number of floats"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn le_ints(bytes: &[u8]) -> Result<Vec<i32>, VadError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(malformed("int32 data is not a whole number of int32s"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn malformed(what: &'static str) -> VadError {
    VadError::MalformedModel { what }
}

/// One field's value, by protobuf wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn bytes(self) -> Result<&'a [u8], VadError> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(malformed("expected a length-delimited field")),
        }
    }

    fn string(self) -> Result<&'a str, VadError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| malformed("a name is not UTF-8"))
    }

    fn varint(self) -> Result<u64, VadError> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(malformed("expected a varint field")),
        }
    }
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, VadError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 64 bits"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], VadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| malformed("field runs past the end of its message"))?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, VadError> {
        if self.at_end() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length out of range"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err(malformed("unsupported protobuf wire type")),
        };
        Ok(Some((key >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field_bytes(field: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(v, out);
    }

    fn tensor(name: &str, dims: &[u64], values: &[f32], raw: bool) -> Vec<u8> {
        let mut t = Vec::new();
        for d in dims {
            field_varint(1, *d, &mut t);
        }
        field_varint(2, FLOAT, &mut t);
        if !name.is_empty() {
            field_bytes(8, name.as_bytes(), &mut t);
        }
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        field_bytes(if raw { 9 } else { 4 }, &data, &mut t);
        t
    }

    /// A model whose graph has an initializer and an `If` whose branch holds
    /// a `Constant`.
    fn model() -> Vec<u8> {
        let mut constant_attr = Vec::new();
        field_bytes(1, b"value", &mut constant_attr);
        field_bytes(
            5,
            &tensor("", &[2], &[1.5, -2.0], false),
            &mut constant_attr,
        );
        let mut constant = Vec::new();
        field_bytes(2, b"w.branch", &mut constant);
        field_bytes(4, b"Constant", &mut constant);
        field_bytes(5, &constant_attr, &mut constant);
        let mut branch = Vec::new();
        field_bytes(1, &constant, &mut branch);

        let mut if_attr = Vec::new();
        field_bytes(1, b"then_branch", &mut if_attr);
        field_bytes(6, &branch, &mut if_attr);
        let mut if_node = Vec::new();
        field_bytes(4, b"If", &mut if_node);
        field_bytes(5, &if_attr, &mut if_node);

        let mut graph = Vec::new();
        field_bytes(1, &if_node, &mut graph);
        field_bytes(5, &tensor("w.init", &[1, 2], &[3.0, 4.0], true), &mut graph);
        let mut model = Vec::new();
        field_varint(1, 8, &mut model); // ir_version, skipped
        field_bytes(7, &graph, &mut model);
        model
    }

    #[test]
    fn finds_initializers_and_constants_in_subgraphs() {
        let tensors = float_tensors(&model()).unwrap();
        assert_eq!(tensors.len(), 2);
        assert_eq!(tensors[0].name, "w.branch");
        assert_eq!(tensors[0].scope, ["then_branch"]);
        assert_eq!(tensors[0].data, [1.5, -2.0]);
        assert_eq!(tensors[1].name, "w.init");
        assert!(tensors[1].scope.is_empty());
        assert_eq!(
            (tensors[1].dims.clone(), tensors[1].data.clone()),
            (vec![1, 2], vec![3.0, 4.0])
        );
    }

    #[test]
    fn truncated_or_garbled_files_are_errors_not_panics() {
        let model = model();
        for len in 0..model.len() {
            // Any prefix either parses (a shorter but valid message) or fails.
            let _ = float_tensors(&model[..len]);
        }
        assert!(float_tensors(&model[..model.len() - 3]).is_err());
        assert!(
            float_tensors(&[0x3b, 0x01]).is_err(),
            "wire type 3 (groups)"
        );
        let mut wrong_count = Vec::new();
        field_bytes(5, &tensor("x", &[3], &[1.0], true), &mut wrong_count);
        let mut file = Vec::new();
        field_bytes(7, &wrong_count, &mut file);
        let err = float_tensors(&file).unwrap_err().to_string();
        assert!(err.contains("`x` has shape [3] but 1 values"), "{err}");
    }
}
