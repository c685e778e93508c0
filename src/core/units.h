// Sizes and rates in human units, both ways.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

// 1536 -> "1.50 KiB", 14 << 30 -> "14.00 GiB"; binary prefixes, two decimals.
std::string format_bytes(uint64_t n);
// "14GiB", "14 GiB", "14G", "512M", "1.5T", "123" (bytes). G and GB mean GiB, as users do.
// Throws tandem::Error naming `what` on anything else, or a value past 2^63.
uint64_t parse_bytes(std::string_view text, std::string_view what);
// 12345678 -> "12.35 M" style counts for parameters.
std::string format_count(double n);
// Appends `item` to a ", "-separated list unless it is already one of its items: the formats
// named in messages ("IQ1_M, IQ2_XXS").
void add_to_list(std::string& list, std::string_view item);

}  // namespace tandem
