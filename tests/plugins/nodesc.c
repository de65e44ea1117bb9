/*
 * nodesc.c - test module "nodesc": a valid shared object that exports no
 * `cage_module` descriptor.  The host must refuse it ("no cage_module
 * symbol") instead of crashing or treating it as a module without methods.
 */

int nodesc_answer(void);

int nodesc_answer(void)
{
	return 42;
}
