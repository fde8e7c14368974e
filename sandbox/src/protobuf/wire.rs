//! The protobuf wire format, read-only: a message's bytes in, its fields out, one at a time.
//!
//! ```text
//! [ tag varint = number << 3 | wire type ][ value ] [ tag ][ value ] ...
//!   wire type 0: varint   1: 8 bytes   2: varint length + bytes   5: 4 bytes
//! ```
//!
//! Only what the Kubernetes messages the sandbox decodes use. Every read is bounds-checked: a
//! truncated or malformed message is an error, never a panic.

use thiserror::Error;

/// What is wrong with the bytes of a message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The message ends inside a tag, a varint or a length-delimited value.
    #[error("the message is truncated")]
    Truncated,
    /// A varint longer than 10 bytes, or over 64 bits.
    #[error("a varint is longer than 64 bits")]
    VarintOverflow,
    /// Field number 0, or one over the protobuf maximum.
    #[error("invalid field number {0}")]
    FieldNumber(u64),
    /// Groups (3, 4) and the unassigned wire types 6 and 7.
    #[error("unsupported wire type {wire_type} of field {field}")]
    WireType {
        /// The field the tag names.
        field: u32,
        /// The wire type of the tag.
        wire_type: u8,
    },
}

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// The value of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0: integers, booleans, enums.
    Varint(u64),
    /// Wire type 2: strings, bytes, embedded messages, map entries.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5: fixed-width numbers, which no decoded field uses.
    Fixed,
}

/// One field of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field number of the `.proto` definition.
    pub number: u32,
    /// Its value.
    pub value: WireValue<'a>,
}

/// The fields of a message, in the order they were written.
pub struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

/// Iterate over the fields of a message.
#[must_use]
pub fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields {
        bytes,
        at: 0,
        failed: false,
    }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = *self.bytes.get(self.at).ok_or(WireError::Truncated)?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the 64th bit.
            if index == 9 && bits > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    fn take(&mut self, length: u64) -> Result<&'a [u8], WireError> {
        let length = usize::try_from(length).map_err(|_| WireError::Truncated)?;
        let end = self.at.checked_add(length).ok_or(WireError::Truncated)?;
        let taken = self.bytes.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn field(&mut self) -> Result<Field<'a>, WireError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError::FieldNumber(number));
        }
        // Checked above: at most 2^29 - 1.
        let number = u32::try_from(number).map_err(|_| WireError::FieldNumber(number))?;
        let value = match tag & 0x7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                WireValue::Fixed
            }
            2 => {
                let length = self.varint()?;
                WireValue::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                WireValue::Fixed
            }
            wire_type => {
                return Err(WireError::WireType {
                    field: number,
                    wire_type: wire_type as u8,
                });
            }
        };
        Ok(Field { number, value })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    /// The next field; after an error, nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Result<Vec<Field<'_>>, WireError> {
        fields(bytes).collect()
    }

    #[test]
    fn reads_varints_strings_and_fixed_values() {
        // field 1 "ab", field 7 varint 300, field 3 fixed32, field 4 fixed64
        let bytes = [
            0x0a, 2, b'a', b'b', 0x38, 0xac, 0x02, 0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(
            all(&bytes),
            Ok(vec![
                Field {
                    number: 1,
                    value: WireValue::Bytes(b"ab"),
                },
                Field {
                    number: 7,
                    value: WireValue::Varint(300),
                },
                Field {
                    number: 3,
                    value: WireValue::Fixed,
                },
                Field {
                    number: 4,
                    value: WireValue::Fixed,
                },
            ])
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        // A length past the end, a tag cut short, a varint that never ends, field number 0,
        // a group, and a length of 2^64 - 1.
        assert_eq!(all(&[0x0a, 5, b'a']), Err(WireError::Truncated));
        assert_eq!(all(&[0x80]), Err(WireError::Truncated));
        assert_eq!(
            all(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            Err(WireError::VarintOverflow)
        );
        assert_eq!(all(&[0x02, 0]), Err(WireError::FieldNumber(0)));
        assert_eq!(
            all(&[0x0b]),
            Err(WireError::WireType {
                field: 1,
                wire_type: 3
            })
        );
        let huge = [
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(all(&huge), Err(WireError::Truncated));
    }
}
