/*
 * elf_check.c - structural check of a plugin file before loading (see
 * elf_check.h).  Reads only the ELF, program and section headers; all
 * offsets are checked against the buffer before use.
 */
#include <elf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "elf_check.h"

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#elif defined(__i386__)
#define HOST_MACHINE EM_386
#elif defined(__arm__)
#define HOST_MACHINE EM_ARM
#elif defined(__riscv)
#define HOST_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define HOST_MACHINE EM_PPC64
#elif defined(__s390x__)
#define HOST_MACHINE EM_S390
#else
#define HOST_MACHINE EM_NONE	/* machine not checked */
#endif

#if UINTPTR_MAX == 0xffffffffffffffffu
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
#define HOST_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
#define HOST_CLASS ELFCLASS32
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif

static int table_fits(uint64_t offset, uint64_t count, uint64_t entry, size_t len,
		      const char *what, char *why, size_t why_size)
{
	uint64_t end;

	if (count && entry && (count > UINT32_MAX || entry > UINT32_MAX ||
			       offset > len || count * entry > len - offset)) {
		end = offset + count * entry;
		snprintf(why, why_size, "truncated: %s ends at byte %llu of %zu", what,
			 (unsigned long long)end, len);
		return -1;
	}
	return 0;
}

int elf_check_shared_object(const void *data, size_t len, char *why, size_t why_size)
{
	const unsigned char *bytes = data;
	Ehdr eh;
	bool has_dynamic = false;

	if (len < EI_NIDENT || memcmp(bytes, ELFMAG, SELFMAG) != 0) {
		snprintf(why, why_size, "not an ELF file (%zu bytes)", len);
		return -1;
	}
	if (bytes[EI_CLASS] != HOST_CLASS || bytes[EI_DATA] != HOST_DATA) {
		snprintf(why, why_size, "ELF class or byte order of another machine");
		return -1;
	}
	if (len < sizeof eh) {
		snprintf(why, why_size, "truncated: %zu bytes, shorter than an ELF header", len);
		return -1;
	}
	memcpy(&eh, bytes, sizeof eh);
	if (HOST_MACHINE != EM_NONE && eh.e_machine != HOST_MACHINE) {
		snprintf(why, why_size, "built for another architecture (ELF machine %u)",
			 eh.e_machine);
		return -1;
	}
	if (eh.e_type != ET_DYN) {
		snprintf(why, why_size, "not a shared object (ELF type %u%s)", eh.e_type,
			 eh.e_type == ET_EXEC ? ", an executable" : "");
		return -1;
	}
	if (eh.e_phentsize != sizeof(Phdr) || eh.e_phnum == 0) {
		snprintf(why, why_size, "no usable program headers");
		return -1;
	}
	if (table_fits(eh.e_phoff, eh.e_phnum, eh.e_phentsize, len, "program header table",
		       why, why_size) < 0 ||
	    table_fits(eh.e_shoff, eh.e_shnum, eh.e_shentsize, len, "section header table",
		       why, why_size) < 0)
		return -1;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Phdr ph;

		memcpy(&ph, bytes + eh.e_phoff + (size_t)i * sizeof ph, sizeof ph);
		if (ph.p_type == PT_DYNAMIC)
			has_dynamic = true;
		if (ph.p_type == PT_LOAD && table_fits(ph.p_offset, 1, ph.p_filesz, len,
						       "a loadable segment", why, why_size) < 0)
			return -1;
	}
	if (!has_dynamic) {
		snprintf(why, why_size, "not a shared object (no dynamic section)");
		return -1;
	}
	return 0;
}
