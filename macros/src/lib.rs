//! `#[coreio::main]` and `#[coreio::test]`, re-exported by coreio (feature `macros`, on by
//! default): an `async fn main` or test body run on a coreio runtime without writing the
//! builder by hand. The documentation, with examples, is on the re-exports in coreio.

// This crate only rewrites a function into a call of coreio's public API (`Builder`,
// `Runtime::run`); it must never depend on coreio's internals, so that the expansion reads like
// code a user could have written.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitInt, LitStr, ReturnType, parse_macro_input};

/// The attribute's arguments.
#[derive(Default)]
struct Args {
    cores: Option<LitInt>,
    backend: Option<LitStr>,
}

impl Args {
    fn parse(attr: TokenStream, allow_cores: bool) -> syn::Result<Args> {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if allow_cores && meta.path.is_ident("cores") {
                let cores: LitInt = meta.value()?.parse()?;
                if cores.base10_parse::<usize>()? == 0 {
                    return Err(syn::Error::new(cores.span(), "`cores` must be at least 1"));
                }
                args.cores = Some(cores);
                Ok(())
            } else if meta.path.is_ident("backend") {
                let backend: LitStr = meta.value()?.parse()?;
                backend_path(&backend)?;
                args.backend = Some(backend);
                Ok(())
            } else if allow_cores {
                Err(meta.error(
                    "unknown argument: expected `cores = N` or `backend = \"auto\" | \"io_uring\" | \"epoll\"`",
                ))
            } else {
                Err(meta.error(
                    "unknown argument: expected `backend = \"auto\" | \"io_uring\" | \"epoll\"`",
                ))
            }
        });
        syn::parse::Parser::parse(parser, attr)?;
        Ok(args)
    }
}

/// `coreio::Backend::X` for a backend name, as `COREIO_BACKEND` spells them.
fn backend_path(name: &LitStr) -> syn::Result<Tokens> {
    let variant = match name.value().as_str() {
        "auto" => quote!(Auto),
        "io_uring" | "uring" => quote!(IoUring),
        "epoll" => quote!(Epoll),
        other => {
            return Err(syn::Error::new(
                name.span(),
                format!("unknown backend {other:?}: expected \"auto\", \"io_uring\" or \"epoll\""),
            ));
        }
    };
    Ok(quote!(::coreio::Backend::#variant))
}

/// The checks both attributes make of the function.
fn check_function(function: &ItemFn, what: &str) -> syn::Result<()> {
    if function.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            function.sig.fn_token.span(),
            format!("{what} needs an `async fn`"),
        ));
    }
    if !function.sig.inputs.is_empty() {
        return Err(syn::Error::new(
            function.sig.inputs.span(),
            format!("{what} takes a function without arguments"),
        ));
    }
    if !function.sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            function.sig.generics.span(),
            format!("{what} takes a function without generic parameters"),
        ));
    }
    Ok(())
}

/// Runs an `async fn main` on a coreio runtime. See `coreio::main`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match Args::parse(attr, true).and_then(|args| expand_main(args, function)) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_main(args: Args, function: ItemFn) -> syn::Result<Tokens> {
    check_function(&function, "#[coreio::main]")?;
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    sig.asyncness = None;
    let backend = args
        .backend
        .as_ref()
        .map(backend_path)
        .transpose()?
        .map(|backend| quote!(.backend(#backend)));
    let cores = match &args.cores {
        Some(cores) if cores.base10_parse::<usize>()? > 1 => cores,
        // One core: the body runs on the calling thread and its output is main's.
        _ => {
            return Ok(quote! {
                #(#attrs)*
                #vis #sig {
                    let body = async move #block;
                    match ::coreio::Builder::new() #backend .block_on(body) {
                        ::core::result::Result::Ok(output) => output,
                        ::core::result::Result::Err(err) => {
                            ::std::eprintln!("coreio: the runtime could not start: {err}");
                            ::std::process::exit(1)
                        }
                    }
                }
            });
        }
    };
    // Several cores: the body is every core's root, so main returns what they all did.
    if let ReturnType::Type(_, ty) = &sig.output {
        return Err(syn::Error::new(
            ty.span(),
            "with `cores = N` the body runs on every core and main returns nothing: \
             report per-core results from the body, or use Runtime::run",
        ));
    }
    let span = Span::call_site();
    Ok(quote_spanned! {span=>
        #(#attrs)*
        #vis #sig {
            let runtime = match ::coreio::Builder::new().cores(#cores) #backend .build() {
                ::core::result::Result::Ok(runtime) => runtime,
                ::core::result::Result::Err(err) => {
                    ::std::eprintln!("coreio: the runtime could not start: {err}");
                    ::std::process::exit(1)
                }
            };
            let mut failed = false;
            for output in runtime.run(|_core| async move #block) {
                if let ::core::result::Result::Err(err) = output {
                    ::std::eprintln!("coreio: {err}");
                    failed = true;
                }
            }
            if failed {
                ::std::process::exit(1);
            }
        }
    })
}

/// Runs an `async fn` test once on io_uring and once on epoll. See `coreio::test`.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match Args::parse(attr, false).and_then(|args| expand_test(args, function)) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_test(args: Args, function: ItemFn) -> syn::Result<Tokens> {
    check_function(&function, "#[coreio::test]")?;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let name = &sig.ident;
    let output = &sig.output;
    let run = |backend: Tokens, label: &str| {
        let message = format!("coreio::test: the {label} runtime could not start");
        quote! {
            ::coreio::Builder::new()
                .backend(#backend)
                .block_on(async move #block)
                .expect(#message)
        }
    };
    if let Some(backend) = &args.backend {
        // One backend asked for: one test, under the function's own name.
        let body = run(backend_path(backend)?, &backend.value());
        return Ok(quote! {
            #[::core::prelude::v1::test]
            #(#attrs)*
            #vis fn #name() #output {
                #body
            }
        });
    }
    let io_uring = run(quote!(::coreio::Backend::IoUring), "io_uring");
    let epoll = run(quote!(::coreio::Backend::Epoll), "epoll");
    Ok(quote! {
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;

            #[::core::prelude::v1::test]
            #(#attrs)*
            fn io_uring() #output {
                #io_uring
            }

            #[::core::prelude::v1::test]
            #(#attrs)*
            fn epoll() #output {
                #epoll
            }
        }
    })
}
