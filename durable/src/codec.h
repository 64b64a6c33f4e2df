// Byte layouts of keys and records (private to durable/): roost::bytes (core/byte_codec.h).
#pragma once

#include <roost/core/byte_codec.h>

namespace roost::durable::codec {

using bytes::get_be;
using bytes::put_be;
using bytes::Reader;
using bytes::Writer;

}  // namespace roost::durable::codec
