SELECT 'f ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || p.provolatile::text || p.proparallel::text || p.prosecdef::text || p.proisstrict::text
       || ' ' || coalesce(p.proconfig::text, '') || ' ' || pg_get_function_result(p.oid) || ' ' || pg_get_function_arguments(p.oid)
       || ' ' || coalesce(array(SELECT a::text FROM aclexplode(p.proacl) a ORDER BY a::text)::text, 'null')
       || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p WHERE p.pronamespace = 'eventbus'::regnamespace
UNION ALL
SELECT 'r ' || c.relkind::text || ' ' || c.oid::regclass::text || ' ' || coalesce(c.reloptions::text, '')
       || ' ' || coalesce(array(SELECT a::text FROM aclexplode(c.relacl) a ORDER BY a::text)::text, 'null')
       || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || ' ' || CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) ELSE '' END
  FROM pg_class c WHERE c.relnamespace = 'eventbus'::regnamespace AND c.relkind <> 'i'
UNION ALL
SELECT 'c ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
       || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || a.attnum
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'eventbus'::regnamespace AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'i ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'eventbus'::regnamespace
UNION ALL
SELECT 'x ' || array(SELECT x::regclass::text FROM unnest(e.extconfig) x ORDER BY 1)::text FROM pg_extension e WHERE e.extname = 'eventbus'
UNION ALL
SELECT 't ' || t.oid::regtype::text FROM pg_type t WHERE t.typnamespace = 'eventbus'::regnamespace AND t.typtype = 'c' AND t.typrelid IN (SELECT oid FROM pg_class WHERE relkind = 'c')
ORDER BY 1;
