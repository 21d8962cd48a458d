// The restricted unpickler and the torch checkpoint reader on hostile and malformed input: each file
// is written byte by byte here, and each must be refused with an Error that names the file and the
// reason. Nothing in a pickle is ever called, so "refused" is all that can happen.
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/file.h"
#include "io/state_dict.h"
#include "io/torch_checkpoint.h"
#include "io/torch_unpickler.h"
#include "test_pickle_util.h"
#include "testing.h"

using namespace sambalm;
using test::PickleBuilder;

namespace {

const std::string kPath = "evil.pth";

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// Expects `fn` to throw an Error mentioning the file and every needle.
template <typename Fn>
void expect_refused(Fn fn, std::initializer_list<std::string> needles, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << what << ": accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(kPath), std::string::npos) << what << ": " << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << what << ": '" << n << "' not in: " << msg;
  }
}

void expect_pickle_refused(const std::string& pk, std::initializer_list<std::string> needles, const std::string& what) {
  expect_refused([&] { pickle::unpickle(u8(pk), pk.size(), kPath); }, needles, what);
}

// A torch zip archive around `pkl` with the given storages.
std::string torch_zip(const std::string& pkl, const std::vector<std::pair<std::string, std::string>>& storages = {},
                      const std::string& lie_name = "", uint32_t lie_size = 0) {
  std::vector<std::pair<std::string, std::string>> entries = {{"archive/data.pkl", pkl}};
  for (const auto& [k, v] : storages) entries.emplace_back("archive/data/" + k, v);
  entries.emplace_back("archive/version", "3\n");
  return test::make_zip(entries, lie_name, lie_size);
}

void expect_checkpoint_refused(const std::string& file, std::initializer_list<std::string> needles,
                               const std::string& what) {
  expect_refused([&] { parse_torch_checkpoint(u8(file), file.size(), kPath, nullptr); }, needles, what);
}

// {"w": tensor} where the tensor is float32 [2, 2] of storage "0" with `numel` elements.
std::string one_tensor_pickle(int numel = 4, int offset = 0, std::vector<int> size = {2, 2},
                              std::vector<int> stride = {2, 1}) {
  PickleBuilder p;
  p.proto().ordered_dict().str("w").tensor("FloatStorage", "0", numel, offset, size, stride).op('s').stop();
  return p.bytes();
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  size_t i = 0;
  for (float f : v) std::memcpy(&s[4 * i++], &f, 4);
  return s;
}

}  // namespace

TEST(PickleSafety, HandMadeCheckpointLoads) {
  // The builder itself makes valid checkpoints, so the refusals below are about the one change each makes.
  std::string file = torch_zip(one_tensor_pickle(), {{"0", floats({1, 2, 3, 4})}});
  TorchCheckpoint ck = parse_torch_checkpoint(u8(file), file.size(), kPath, nullptr);
  ASSERT_EQ(ck.tensors.size(), 1u);
  EXPECT_EQ(ck.tensors[0].first, "w");
  EXPECT_EQ(ck.tensors[0].second.shape(), (Shape{2, 2}));
  EXPECT_EQ(ck.tensors[0].second.data<float>()[3], 4.0f);

  // Transposed strides and an offset: copied to row-major.
  file = torch_zip(one_tensor_pickle(5, 1, {2, 2}, {1, 2}), {{"0", floats({9, 1, 2, 3, 4})}});
  ck = parse_torch_checkpoint(u8(file), file.size(), kPath, nullptr);
  const float* v = ck.tensors[0].second.data<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 3.0f);
  EXPECT_EQ(v[2], 2.0f);
  EXPECT_EQ(v[3], 4.0f);
}

TEST(PickleSafety, DangerousGlobalsAreRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> globals = {
      {"os", "system"},
      {"posix", "system"},
      {"nt", "system"},
      {"builtins", "eval"},
      {"builtins", "exec"},
      {"__builtin__", "eval"},
      {"subprocess", "Popen"},
      {"subprocess", "check_output"},
      {"evil_module", "Thing"},
      {"torch", "load"},
      {"torch._utils", "_rebuild_device_tensor_from_numpy"},
      {"collections", "defaultdict"},
      {"numpy.core.multiarray", "_reconstruct"}};
  for (const auto& [m, n] : globals) {
    PickleBuilder p;
    p.proto().global(m, n).str("echo pwned").tuple1().reduce().stop();
    expect_pickle_refused(p.bytes(), {m + "." + n, "not allowed"}, "REDUCE " + m + "." + n);
    // Inside a real checkpoint archive as well.
    expect_checkpoint_refused(torch_zip(p.bytes()), {m + "." + n}, "zip with " + m + "." + n);
  }
  // STACK_GLOBAL (protocol 4) spells the name on the stack.
  PickleBuilder p4;
  p4.proto(4).byte(0x8c).byte(8).raw("builtins").byte(0x8c).byte(4).raw("eval").byte(0x93).stop();
  expect_pickle_refused(p4.bytes(), {"builtins.eval"}, "STACK_GLOBAL builtins.eval");
  // An unsupported storage type is named as such.
  PickleBuilder pc;
  pc.proto().global("torch", "ComplexFloatStorage").stop();
  expect_pickle_refused(pc.bytes(), {"torch.ComplexFloatStorage", "not supported"}, "complex storage");
}

TEST(PickleSafety, ObjectConstructionOpcodesAreRefused) {
  PickleBuilder inst;
  inst.proto().mark().str("rm -rf /").op('i').raw("os\nsystem\n").stop();
  expect_pickle_refused(inst.bytes(), {"INST", "os.system"}, "INST");

  PickleBuilder obj;
  obj.proto().mark().global("collections", "OrderedDict").op('o').stop();
  expect_pickle_refused(obj.bytes(), {"OBJ", "collections.OrderedDict"}, "OBJ");

  PickleBuilder newobj;
  newobj.proto().global("collections", "OrderedDict").int1(1).tuple1().byte(0x81).stop();
  expect_pickle_refused(newobj.bytes(), {"NEWOBJ", "collections.OrderedDict"}, "NEWOBJ with args");
  PickleBuilder newobj_ex;
  newobj_ex.proto(4).global("torch._utils", "_rebuild_tensor_v2").empty_tuple().op('}').byte(0x92).stop();
  expect_pickle_refused(newobj_ex.bytes(), {"NEWOBJ_EX", "_rebuild_tensor_v2"}, "NEWOBJ_EX");
  PickleBuilder evil_new;
  evil_new.proto().global("subprocess", "Popen").empty_tuple().byte(0x81).stop();
  expect_pickle_refused(evil_new.bytes(), {"subprocess.Popen"}, "NEWOBJ of Popen");

  PickleBuilder build;
  build.proto().global("torch._utils", "_rebuild_tensor_v2").op('}').op('b').stop();
  expect_pickle_refused(build.bytes(), {"BUILD", "global"}, "BUILD on a global");
  PickleBuilder storage_call;
  storage_call.proto().global("torch", "FloatStorage").int1(4).tuple1().reduce().stop();
  expect_pickle_refused(storage_call.bytes(), {"torch.FloatStorage", "cannot be called"}, "calling a storage type");
  PickleBuilder ext;
  ext.proto().byte(0x82).byte(1).stop();
  expect_pickle_refused(ext.bytes(), {"EXT"}, "EXT1");
  PickleBuilder buffer;
  buffer.proto(5).byte(0x97).stop();
  expect_pickle_refused(buffer.bytes(), {"out-of-band"}, "NEXT_BUFFER");
  PickleBuilder text;
  text.proto().raw("I1\n").stop();
  expect_pickle_refused(text.bytes(), {"protocol 0/1"}, "text INT");
}

TEST(PickleSafety, MalformedStreamsAreRefused) {
  PickleBuilder memo;
  memo.proto().get(7).stop();
  expect_pickle_refused(memo.bytes(), {"memo index 7"}, "BINGET out of range");
  PickleBuilder long_memo;
  long_memo.proto().int1(1).put(0).op('j').le(0xFFFFFFFFu, 4).stop();
  expect_pickle_refused(long_memo.bytes(), {"memo index 4294967295"}, "LONG_BINGET out of range");

  PickleBuilder underflow;
  underflow.proto().int1(1).tuple2().stop();
  expect_pickle_refused(underflow.bytes(), {"stack underflow"}, "TUPLE2 of one item");
  PickleBuilder underflow_mark;
  underflow_mark.proto().int1(1).mark().op('0').stop();  // POP may not cross the mark
  expect_pickle_refused(underflow_mark.bytes(), {"stack underflow"}, "POP across a MARK");
  PickleBuilder empty_stop;
  empty_stop.proto().stop();
  expect_pickle_refused(empty_stop.bytes(), {"stack underflow"}, "STOP on an empty stack");
  PickleBuilder no_mark;
  no_mark.proto().int1(1).tuple().stop();
  expect_pickle_refused(no_mark.bytes(), {"no MARK"}, "TUPLE without MARK");

  PickleBuilder deep;
  deep.proto();
  for (int i = 0; i < 200; ++i) deep.op(']');
  for (int i = 0; i < 199; ++i) deep.op('a');
  deep.stop();
  expect_pickle_refused(deep.bytes(), {"nested deeper"}, "deeply nested lists");
  PickleBuilder deep_tuples;
  deep_tuples.proto().int1(0);
  for (int i = 0; i < 100; ++i) deep_tuples.tuple1();
  deep_tuples.stop();
  expect_pickle_refused(deep_tuples.bytes(), {"nested deeper"}, "deeply nested tuples");
  PickleBuilder marks;
  marks.proto();
  for (int i = 0; i < 5000; ++i) marks.mark();
  marks.stop();
  expect_pickle_refused(marks.bytes(), {"MARK"}, "mark stack");

  PickleBuilder truncated;
  truncated.proto().op('X').le(1000, 4).raw("short");
  expect_pickle_refused(truncated.bytes(), {"truncated"}, "string longer than the data");
  PickleBuilder huge;
  huge.proto().byte(0x8d).le(~uint64_t{0}, 8).stop();
  expect_pickle_refused(huge.bytes(), {"truncated"}, "BINUNICODE8 of 2^64-1 bytes");
  PickleBuilder no_stop;
  no_stop.proto().int1(1);
  expect_pickle_refused(no_stop.bytes(), {"without a STOP"}, "no STOP");
  PickleBuilder unknown;
  unknown.proto().byte(0xff).stop();
  expect_pickle_refused(unknown.bytes(), {"unknown pickle opcode 0xff"}, "unknown opcode");
  PickleBuilder future;
  future.proto(6).stop();
  expect_pickle_refused(future.bytes(), {"protocol 6"}, "protocol 6");
  PickleBuilder unhashable;
  unhashable.proto().op('}').op(']').int1(1).op('s').stop();
  expect_pickle_refused(unhashable.bytes(), {"unhashable"}, "list as a dict key");
  PickleBuilder append_to_int;
  append_to_int.proto().int1(1).int1(2).op('a').stop();
  expect_pickle_refused(append_to_int.bytes(), {"APPEND to a int"}, "APPEND to an int");
  PickleBuilder bad_pid;
  bad_pid.proto().str("file:///etc/passwd").op('Q').stop();
  expect_pickle_refused(bad_pid.bytes(), {"persistent id"}, "persistent id that is not a storage");
}

TEST(PickleSafety, CheckpointContentsAreValidated) {
  // A weight that is not a tensor.
  PickleBuilder not_tensor;
  not_tensor.proto().ordered_dict().str("w").str("rm -rf /").op('s').stop();
  expect_checkpoint_refused(torch_zip(not_tensor.bytes()), {"weight 'w'", "str, not a tensor"}, "str weight");
  // The root is not a dict.
  PickleBuilder list_root;
  list_root.proto().op(']').stop();
  expect_checkpoint_refused(torch_zip(list_root.bytes()), {"is a list"}, "list root");
  // A Fabric dict whose model entry holds an int.
  PickleBuilder fabric;
  fabric.proto().op('}').str("model").op('}').str("step").int1(3).op('s').op('s').stop();
  expect_checkpoint_refused(torch_zip(fabric.bytes()), {"weight 'step'", "'model'", "int"}, "Fabric int weight");

  std::string pkl = one_tensor_pickle();
  // Storage bytes disagree with the pickle's element count.
  expect_checkpoint_refused(torch_zip(pkl, {{"0", floats({1, 2, 3})}}), {"archive/data/0", "12 bytes", "16 bytes"},
                            "storage size mismatch");
  // The storage entry is missing.
  expect_checkpoint_refused(torch_zip(pkl), {"storage '0'", "no entry 'archive/data/0'"}, "missing storage entry");
  // The tensor reaches past its storage.
  expect_checkpoint_refused(torch_zip(one_tensor_pickle(4, 1), {{"0", floats({1, 2, 3, 4})}}),
                            {"tensor 'w'", "element 4", "4 elements"}, "view past the storage end");
  expect_checkpoint_refused(torch_zip(one_tensor_pickle(4, 0, {2, 2}, {2, -1}), {{"0", floats({1, 2, 3, 4})}}),
                            {"negative stride"}, "negative stride");
  expect_checkpoint_refused(torch_zip(one_tensor_pickle(4, 0, {2, 2}, {2, 0x7fffffff}), {{"0", floats({1, 2, 3, 4})}}),
                            {"tensor 'w'", "needs element"}, "huge stride");
  // Overlapping (expanded) strides: a copy would be larger than the storage.
  expect_checkpoint_refused(torch_zip(one_tensor_pickle(1, 0, {1000, 1000}, {0, 0}), {{"0", floats({1})}}),
                            {"tensor 'w'", "overlapping strides"}, "stride-0 expansion");
  // Two references to storage "0" that disagree about its type.
  PickleBuilder two_types;
  two_types.proto().ordered_dict().mark();
  two_types.str("a").tensor("FloatStorage", "0", 4, 0, {4}, {1});
  two_types.str("b").tensor("IntStorage", "0", 4, 0, {4}, {1});
  two_types.op('u').stop();
  expect_checkpoint_refused(torch_zip(two_types.bytes(), {{"0", floats({1, 2, 3, 4})}}), {"storage '0'", "twice"},
                            "storage of two dtypes");
}

TEST(PickleSafety, MalformedArchivesAreRefused) {
  std::string pkl = one_tensor_pickle();
  std::vector<std::pair<std::string, std::string>> st = {{"0", floats({1, 2, 3, 4})}};
  // A central directory size that lies (bigger than the data that is there).
  expect_checkpoint_refused(torch_zip(pkl, st, "archive/data/0", 1u << 30), {"archive/data/0", "past the end"},
                            "entry size that lies");
  expect_checkpoint_refused(torch_zip(pkl, st, "archive/data/0", 8), {"archive/data/0", "8 bytes"},
                            "entry size too small");
  // Corrupt pickle bytes under an intact directory.
  std::string file = torch_zip(pkl, st);
  std::string corrupt = file;
  corrupt[30 + 16 + 10] ^= 0x55;  // inside data.pkl (after the 30-byte local header and its name)
  expect_checkpoint_refused(corrupt, {"archive/data.pkl", "CRC-32"}, "corrupt data.pkl");
  // Truncated archives, at every length: an Error each time, never a crash.
  for (size_t n = 0; n < file.size(); n += 7)
    expect_checkpoint_refused(file.substr(0, n), {}, "truncated to " + std::to_string(n));
  // No data.pkl.
  expect_checkpoint_refused(test::make_zip({{"archive/version", "3"}}), {"data.pkl"}, "no pickle");
  // Big-endian byte order.
  expect_checkpoint_refused(test::make_zip({{"a/data.pkl", pkl}, {"a/byteorder", "big"}, {"a/data/0", st[0].second}}),
                            {"byteorder", "big"}, "big endian");
  // The same name twice.
  expect_checkpoint_refused(test::make_zip({{"a/data.pkl", pkl}, {"a/data.pkl", pkl}}), {"twice"}, "duplicate entry");
  // A compressed entry (method 8).
  std::string compressed = torch_zip(pkl, st);
  compressed[8] = 8;  // local header method
  size_t cd = compressed.find(std::string("PK\x01\x02", 4));
  compressed[cd + 10] = 8;  // central directory method
  expect_checkpoint_refused(compressed, {"archive/data.pkl", "compressed"}, "deflated entry");
  // Something else entirely.
  expect_checkpoint_refused("not a checkpoint", {"not a torch.save file"}, "text");
}

TEST(PickleSafety, LegacyFormatIsValidated) {
  REQUIRE_FIXTURES();
  std::string good = read_text_file(test::fixtures_dir() + "/pth/mamba_tiny_legacy_t113/pytorch_model.bin");
  ASSERT_NO_THROW(parse_torch_checkpoint(u8(good), good.size(), kPath, nullptr));
  // Cut anywhere in the storage data or the pickles: refused.
  for (size_t n : {good.size() - 1, good.size() - 300, size_t{4000}, size_t{200}, size_t{16}, size_t{3}})
    expect_checkpoint_refused(good.substr(0, n), {}, "legacy truncated to " + std::to_string(n));
  // A pickle that is not a torch.save file (no magic number).
  PickleBuilder p;
  p.proto().ordered_dict().stop();
  expect_checkpoint_refused(p.bytes(), {"magic number"}, "pickle without magic");
  // A wrong element count in the data section.
  std::string bad = good;
  bad[4076] ^= 1;  // the first storage's int64 count
  expect_checkpoint_refused(bad, {"elements in the data section"}, "legacy count mismatch");
}

TEST(PickleSafety, CliRefusesWithoutCrashing) {
  auto dir = test::temp_dir("evil");
  PickleBuilder p;
  p.proto().global("os", "system").str("touch " + dir + "/pwned").tuple1().reduce().stop();
  write_file_atomic(dir + "/evil.pth", torch_zip(p.bytes()));
  expect_refused([&] { read_state_dict(dir + "/evil.pth"); }, {"os.system"}, "read_state_dict");
  std::string out;
  int rc = test::run_cli("convert " + dir + "/evil.pth --out " + dir + "/out --config Samba_421M", &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(rc, 128) << "crashed: " << out;
  EXPECT_NE(out.find("os.system"), std::string::npos) << out;
  EXPECT_NE(out.find("evil.pth"), std::string::npos) << out;
  // Any command that takes --model refuses it the same way.
  rc = test::run_cli("forward --model " + dir + "/evil.pth --config Samba_421M --inputs x --out " + dir + "/o", &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(rc, 128) << "crashed: " << out;
  EXPECT_NE(out.find("os.system"), std::string::npos) << out;
  EXPECT_FALSE(std::ifstream(dir + "/pwned").good());
}

TEST(PickleSafety, CommittedSamples) {
  // tests/data/pickles, written by tools/make_pickle_seeds.py with Python's pickle module.
  const std::string dir = std::string(SAMBALM_SOURCE_DIR) + "/tests/data/pickles/";
  for (const char* name : {"plain_p2.pkl", "plain_p4.pkl", "plain_p5.pkl", "state_dict_p2.pkl", "state_dict_p4.pkl",
                           "state_dict_p5.pkl", "fabric_p2.pkl"}) {
    std::string b = read_text_file(dir + name);
    pickle::Pickle p = pickle::unpickle(u8(b), b.size(), name);
    ASSERT_EQ(p.root()->kind, pickle::Kind::Dict) << name;
    EXPECT_EQ(p.consumed(), b.size()) << name;
  }
  std::string plain = read_text_file(dir + "plain_p4.pkl");
  pickle::Pickle p = pickle::unpickle(u8(plain), plain.size(), "plain_p4.pkl");
  EXPECT_EQ(p.root()->get("big")->kind, pickle::Kind::BigInt);
  EXPECT_EQ(p.root()->get("neg")->kind, pickle::Kind::BigInt);
  EXPECT_EQ(p.root()->get("u")->s, "h\xc3\xa9llo");
  EXPECT_EQ(p.root()->get("long")->s.size(), 300u);
  EXPECT_EQ(p.root()->get("set")->kind, pickle::Kind::Set);
  const pickle::Object* a = p.root()->get("a");
  ASSERT_EQ(a->kind, pickle::Kind::List);
  EXPECT_EQ(a->items[1]->i, -2);
  EXPECT_EQ(a->items[2]->f, 3.5);

  // Protocol 2 pickles bytes through _codecs.encode: a call, so refused like any other.
  std::string bytes_p2 = "\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00latin1\x86R.";
  EXPECT_THROW(pickle::unpickle(u8(bytes_p2), bytes_p2.size(), "b.pkl"), Error);
  for (const char* name : {"evil_os_system.pkl", "evil_builtins_eval_p4.pkl", "evil_inst.pkl"}) {
    std::string b = read_text_file(dir + name);
    EXPECT_THROW(pickle::unpickle(u8(b), b.size(), name), Error) << name;
  }

  // A small checkpoint: float32 and bfloat16 storages, a tied pair, a transposed view at an offset.
  auto sd = read_state_dict(dir + "small_state_dict.pth");
  ASSERT_EQ(sd.size(), 4u);
  EXPECT_EQ(sd.at("embedding.weight").raw(), sd.at("lm_head.weight").raw());
  const Tensor& t = sd.at("t.weight");  // storage values 0.5 k; elements 6.. with strides (1, 2)
  ASSERT_EQ(t.shape(), (Shape{2, 3}));
  const float want[6] = {3.0f, 4.0f, 5.0f, 3.5f, 4.5f, 5.5f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], want[i]) << i;
  EXPECT_EQ(sd.at("norm.weight").dtype(), DType::BF16);
  EXPECT_EQ(sd.at("norm.weight").data<uint16_t>()[3], 0x3f83);
}
