// The colour of one RAM-map cell: the bytes [first_word * 4, (first_word + n_words) * 4) of the
// `ram` buffer (declared by the including shader as `ram.words[]`, little-endian bytes), each
// classified and the class colours mixed in proportion with integer arithmetic rounded down:
// exactly compositor/ram_map.cpp's pixel_colour(). Returns rgb in 0..255 and, in .w, the number
// of non-zero bytes (the 3D view's opacity). Loops are bounded by n_words.
uvec4 cell_colour(uint first_word, uint n_words) {
  uint counts[5] = uint[5](0u, 0u, 0u, 0u, 0u);
  for (uint w = first_word; w < first_word + n_words; ++w) {
    uint v = ram.words[w];
    counts[byte_class(v & 255u)]++;
    counts[byte_class((v >> 8u) & 255u)]++;
    counts[byte_class((v >> 16u) & 255u)]++;
    counts[byte_class(v >> 24u)]++;
  }
  uint n = max(n_words * 4u, 1u);
  uvec3 sum = uvec3(0u);
  for (uint c = 0u; c < 5u; ++c) sum += counts[c] * kClassColour[c];
  return uvec4(sum / n, n - counts[0]);
}
